"""Pieces every generated script shares: its header, its constants and its dataset loader."""

from __future__ import annotations

import pprint
import textwrap
from collections.abc import Iterable

from workflows.models import MAX_CODE_CHARS

# Read the CSV the way the profiler did, so the script sees the same columns.
LOAD_DATASET = '''
def load_dataset(path: str) -> pd.DataFrame:
    """Read the CSV, tolerating a UTF-8 BOM, Latin-1 bytes and ; tab or | separators."""
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            with open(path, encoding=encoding, newline="") as handle:
                header = handle.readline()
            # The separator that splits the header into the most fields; a comma on ties.
            counts = {sep: len(next(csv.reader([header], delimiter=sep), [])) for sep in ",;\\t|"}
            sep = max(counts, key=lambda s: counts[s]) if max(counts.values()) > 1 else ","
            return pd.read_csv(path, sep=sep, encoding=encoding, low_memory=False)
        except UnicodeDecodeError:
            continue  # latin-1 decodes any byte, so the loop always returns
    raise SystemExit(f"could not decode {path}")
'''

JSON_SAFE = '''
def json_safe(value: object) -> object:
    """Plain JSON values: numpy numbers become Python ones, NaN and infinities become null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
'''


def literal(name: str, value: object, comment: str = "") -> str:
    """`NAME = value` as readable, valid Python, wrapped under 100 characters."""
    prefix = f"{name} = "
    text = pprint.pformat(value, width=99 - len(prefix), compact=True, sort_dicts=False)
    text = text.replace("\n", "\n" + " " * len(prefix))
    return (f"# {comment}\n" if comment else "") + prefix + text


def constants_block(assignments: Iterable[str]) -> str:
    """Assignments one per line, with a blank line before each commented one."""
    parts = [("\n" + a) if a.startswith("#") else a for a in assignments]
    return "\n".join(parts).strip("\n")


def call(head: str, args: list[str], indent: int = 0, width: int = 99) -> str:
    """`head(arg, ...)` on one line if it fits, else with the arguments wrapped below it."""
    pad = " " * indent
    one_line = f"{pad}{head}({', '.join(args)})"
    if len(one_line) <= width:
        return one_line
    wrapped = textwrap.fill(
        ", ".join(args) + ",",
        width=width,
        initial_indent=pad + "    ",
        subsequent_indent=pad + "    ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return f"{pad}{head}(\n{wrapped}\n{pad})"


def docstring(paragraphs: Iterable[str], width: int = 92) -> str:
    """A module docstring: the first paragraph is its title, the rest are wrapped."""
    # The goal is user text: backslashes and triple quotes must not end or break the string.
    texts = [p.replace("\\", "\\\\").replace('"""', "'''").strip() for p in paragraphs]
    body = "\n\n".join(textwrap.fill(t, width=width) for t in texts)
    return f'"""{body}\n"""'


def check_size(code: str) -> str:
    if len(code) > MAX_CODE_CHARS:
        raise ValueError(
            f"the generated code has {len(code):,} characters (limit {MAX_CODE_CHARS:,}); "
            "the dataset has too many columns for the offline agent"
        )
    return code
