"""The rules every generated script obeys, whichever brain wrote it, stated and checked once.

A script reads the dataset from DATASET_PATH, writes into OUTPUT_DIR, imports only what the
sandbox has installed, and writes the files its step promises. The LLM agents feed a broken
required rule back to the model; the offline brain refuses to hand such a script over; the
critic reports every rule a training script breaks.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from typing import Literal

ScriptKind = Literal["eda", "training"]

# Installed in the sandbox next to the standard library (import names, not package names).
ALLOWED_PACKAGES = (
    "pandas",
    "numpy",
    "sklearn",
    "joblib",
    "matplotlib",
    "cloudpickle",
    "pyarrow",  # [big-data] Parquet datasets, read in batches when sampled
)
DATASET_ENV = "DATASET_PATH"
OUTPUT_ENV = "OUTPUT_DIR"
PLOT_CALL = "savefig"  # how matplotlib writes the PNG plots every step promises


@dataclass(frozen=True)
class Output:
    name: str
    required: bool  # False: the contract asks for it, but a script without it still runs
    what: str


OUTPUTS: dict[ScriptKind, tuple[Output, ...]] = {
    "eda": (Output("eda_summary.json", True, "the EDA summary the next agents read"),),
    "training": (
        Output("metrics.json", True, "the scores the critic and the run compare"),
        Output("model.joblib", True, "the fitted pipeline the predict route loads"),
        # Required: without it the predict route cannot use the model at all.
        Output("input_schema.json", True, "the columns the predict route checks rows against"),
        Output("model_card.json", False, "how the model came to be"),
    ),
}


@dataclass(frozen=True)
class RuleBreach:
    rule: str  # "syntax", "imports", "dataset_input", "output_dir", "output:<file>", "plots"
    message: str
    required: bool


def allowed_module(name: str) -> bool:
    return name in sys.stdlib_module_names or name in ALLOWED_PACKAGES


def imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute import, wherever it appears in the script."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _string_constants(tree: ast.AST) -> list[str]:
    return [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def _reads_environment(tree: ast.AST, variable: str) -> bool:
    """os.environ[...], os.environ.get(...) or os.getenv(...) of `variable`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
            if isinstance(node.slice, ast.Constant) and node.slice.value == variable:
                return True
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            first = node.args[0]
            if (func.endswith("environ.get") or func.endswith("getenv")) and (
                isinstance(first, ast.Constant) and first.value == variable
            ):
                return True
    return False


def _calls(tree: ast.AST, name: str) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == name:
                return True
    return False


def check_script(code: str, kind: ScriptKind) -> list[RuleBreach]:
    """Every rule `code` breaks, for a script of the given step; empty when it obeys them all."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [RuleBreach("syntax", f"Python syntax error at line {exc.lineno}: {exc.msg}", True)]
    except ValueError as exc:  # null bytes in the source
        return [RuleBreach("syntax", f"not Python source: {exc}", True)]
    breaches = []
    if missing := sorted(n for n in imported_modules(tree) if not allowed_module(n)):
        breaches.append(
            RuleBreach(
                "imports",
                f"it imports {missing}, which are not installed (only the standard library, "
                f"{', '.join(ALLOWED_PACKAGES)} are available)",
                True,
            )
        )
    for rule, variable, role in (
        ("dataset_input", DATASET_ENV, "the dataset's path"),
        ("output_dir", OUTPUT_ENV, "the folder to write into"),
    ):
        if not _reads_environment(tree, variable):
            breaches.append(
                RuleBreach(
                    rule, f"it does not read {role} from the {variable} environment variable", True
                )
            )
    constants = _string_constants(tree)
    for output in OUTPUTS[kind]:
        # The file name as a path part ("metrics.json", f"{OUTPUT_DIR}/metrics.json"); a
        # docstring or a message that merely mentions it does not write it.
        if not any(text == output.name or text.endswith("/" + output.name) for text in constants):
            breaches.append(
                RuleBreach(
                    f"output:{output.name}",
                    f"it does not write {output.name} ({output.what}) into {OUTPUT_ENV}",
                    output.required,
                )
            )
    if not _calls(tree, PLOT_CALL):
        breaches.append(
            RuleBreach("plots", f"it writes no PNG plots (matplotlib {PLOT_CALL})", False)
        )
    return breaches


def required_breaches(code: str, kind: ScriptKind) -> list[RuleBreach]:
    return [b for b in check_script(code, kind) if b.required]


def enforce(code: str, kind: ScriptKind) -> str:
    """The code, if it obeys every rule; a ValueError naming what it breaks otherwise."""
    breaches = check_script(code, kind)
    if breaches:
        raise ValueError(f"{kind} script: " + "; ".join(b.message for b in breaches))
    return code
