"""Pieces every generated script shares: its header, its constants and its dataset loader."""

from __future__ import annotations

import pprint
import textwrap
from collections.abc import Iterable

from activities.offline.templates import template_source
from workflows.models import MAX_CODE_CHARS, DatasetProfile

# Read the dataset whatever its format (CSV, gzip or zip CSV, Parquet), optionally sampled:
# a real module in templates/, included in every script (activities/profiling.py reads the
# same columns).
LOAD_DATASET = template_source("dataset_reader")


def literal(name: str, value: object, comment: str = "") -> str:
    """`NAME = value` as readable, valid Python, wrapped under 100 characters."""
    prefix = f"{name} = "
    text = pprint.pformat(value, width=99 - len(prefix), compact=True, sort_dicts=False)
    text = text.replace("\n", "\n" + " " * len(prefix))
    return (f"# {comment}\n" if comment else "") + prefix + text


def csv_dialect(profile: DatasetProfile) -> list[str]:
    """The CSV dialect profiling decided, as the constants a script passes to load_dataset."""
    return [
        literal(
            "CSV_DELIMITER",
            profile.delimiter,
            "The file's CSV dialect, as profiling found it (Parquet ignores both).",
        ),
        literal("CSV_ENCODING", profile.encoding),
    ]


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
