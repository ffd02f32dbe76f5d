"""Generated code for people: Python highlighted by Pygments and diffs by difflib, server-side.

Both produce plain data (lines of `(css class, text)` pieces) that the templates render with
autoescaping, so no string from generated code ever reaches the page as markup.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer
from pygments.token import STANDARD_TYPES, _TokenType

# Pygments' own short class names ("k", "s2", "c1"), so its stylesheet applies unchanged.
HIGHLIGHT_CSS_SCOPE = ".code"
PYGMENTS_STYLE = "default"

Piece = tuple[str, str]  # (css class, text)
Line = list[Piece]
RowKind = Literal["equal", "delete", "insert", "replace"]


def _css_class(token_type: _TokenType) -> str:
    # Fall back to the parent type for token types the stylesheet has no rule for.
    while token_type not in STANDARD_TYPES and token_type.parent is not None:
        token_type = token_type.parent
    return STANDARD_TYPES.get(token_type, "")


def highlight_lines(code: str) -> list[Line]:
    """The code split into lines, each a list of highlighted pieces (multi-line tokens split)."""
    lines: list[Line] = [[]]
    for token_type, value in PythonLexer(stripnl=False, ensurenl=False).get_tokens(code):
        css = _css_class(token_type)
        for number, part in enumerate(value.split("\n")):
            if number:
                lines.append([])
            if part:
                lines[-1].append((css, part))
    if code.endswith("\n") and not lines[-1]:
        lines.pop()  # the newline ending the last line does not start another
    return lines


@lru_cache(maxsize=1)
def highlight_stylesheet() -> str:
    return str(HtmlFormatter(style=PYGMENTS_STYLE).get_style_defs(HIGHLIGHT_CSS_SCOPE))


@dataclass(frozen=True)
class DiffCell:
    number: int | None
    line: Line | None


@dataclass(frozen=True)
class SideBySideRow:
    kind: RowKind
    old: DiffCell
    new: DiffCell


@dataclass(frozen=True)
class UnifiedRow:
    sign: Literal[" ", "-", "+"]
    old_number: int | None
    new_number: int | None
    line: Line


@dataclass(frozen=True)
class HunkHeader:
    text: str  # "@@ -3,7 +3,9 @@"


@dataclass(frozen=True)
class CodeDiff:
    old_version: int
    new_version: int
    side_by_side: list[SideBySideRow | HunkHeader]
    unified: list[UnifiedRow | HunkHeader]
    added: int
    removed: int

    @property
    def unchanged(self) -> bool:
        return self.added == 0 and self.removed == 0


def diff_code(
    old_code: str, new_code: str, old_version: int, new_version: int, context: int = 3
) -> CodeDiff:
    """Side-by-side and unified views of what changed, with `context` unchanged lines per hunk."""
    old_text, new_text = old_code.splitlines(), new_code.splitlines()
    old_lines, new_lines = (
        _padded(highlight_lines(old_code), old_text),
        _padded(highlight_lines(new_code), new_text),
    )
    matcher = difflib.SequenceMatcher(a=old_text, b=new_text, autojunk=False)
    side: list[SideBySideRow | HunkHeader] = []
    unified: list[UnifiedRow | HunkHeader] = []
    added = removed = 0
    for group in matcher.get_grouped_opcodes(context):
        first, last = group[0], group[-1]
        header = HunkHeader(
            f"@@ -{first[1] + 1},{last[2] - first[1]} +{first[3] + 1},{last[4] - first[3]} @@"
        )
        side.append(header)
        unified.append(header)
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for offset in range(i2 - i1):
                    i, j = i1 + offset, j1 + offset
                    side.append(
                        SideBySideRow(
                            "equal", DiffCell(i + 1, old_lines[i]), DiffCell(j + 1, new_lines[j])
                        )
                    )
                    unified.append(UnifiedRow(" ", i + 1, j + 1, new_lines[j]))
                continue
            removed += i2 - i1
            added += j2 - j1
            for offset in range(max(i2 - i1, j2 - j1)):
                i, j = i1 + offset, j1 + offset
                old = DiffCell(i + 1, old_lines[i]) if i < i2 else DiffCell(None, None)
                new = DiffCell(j + 1, new_lines[j]) if j < j2 else DiffCell(None, None)
                kind: RowKind = "replace"
                if old.line is None:
                    kind = "insert"
                elif new.line is None:
                    kind = "delete"
                side.append(SideBySideRow(kind, old, new))
            unified.extend(UnifiedRow("-", i + 1, None, old_lines[i]) for i in range(i1, i2))
            unified.extend(UnifiedRow("+", None, j + 1, new_lines[j]) for j in range(j1, j2))
    return CodeDiff(old_version, new_version, side, unified, added, removed)


def _padded(lines: list[Line], text: list[str]) -> list[Line]:
    """Highlighted lines aligned one-to-one with `str.splitlines()` of the same code."""
    if len(lines) == len(text):
        return lines
    # Line breaks Pygments does not see as "\n" (\r, form feeds): show the plain text instead.
    return [[("", line)] for line in text]
