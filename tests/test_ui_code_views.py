"""Server-side highlighting and diffs of generated code: plain data, aligned line for line."""

from __future__ import annotations

from api.ui.code_views import HunkHeader, diff_code, highlight_lines


def plain(line: list[tuple[str, str]]) -> str:
    return "".join(text for _, text in line)


def test_highlighted_lines_match_the_source_line_for_line():
    code = 'x = """first\nsecond"""\n\n# done\n'
    lines = highlight_lines(code)
    assert [plain(line) for line in lines] == code.splitlines()
    assert ("c1", "# done") in lines[3]  # a comment keeps Pygments' class for the stylesheet


def test_a_multiline_string_is_split_into_lines_keeping_its_class():
    lines = highlight_lines('"""a\nb"""\n')
    assert lines == [[("sd", '"""a')], [("sd", 'b"""')]]


def test_unified_diff_shows_removed_then_added_lines_with_both_numbers():
    diff = diff_code("a = 1\nb = 2\nc = 3\n", "a = 1\nb = 5\nc = 3\nd = 4\n", 1, 2)
    rows = [row for row in diff.unified if not isinstance(row, HunkHeader)]
    assert [(row.sign, row.old_number, row.new_number, plain(row.line)) for row in rows] == [
        (" ", 1, 1, "a = 1"),
        ("-", 2, None, "b = 2"),
        ("+", None, 2, "b = 5"),
        (" ", 3, 3, "c = 3"),
        ("+", None, 4, "d = 4"),
    ]
    assert (diff.added, diff.removed) == (2, 1)
    assert isinstance(diff.unified[0], HunkHeader) and diff.unified[0].text == "@@ -1,3 +1,4 @@"


def test_side_by_side_pairs_changed_lines_and_leaves_gaps_for_inserts():
    diff = diff_code("a\nb\n", "a\nB\nc\n", 1, 2)
    rows = [row for row in diff.side_by_side if not isinstance(row, HunkHeader)]
    assert [row.kind for row in rows] == ["equal", "replace", "insert"]
    assert rows[2].old.line is None and rows[2].new.number == 3


def test_only_context_around_changes_is_shown():
    old = "".join(f"line_{n} = {n}\n" for n in range(40))
    new = old.replace("line_20 = 20", "line_20 = 200")
    diff = diff_code(old, new, 1, 2, context=3)
    rows = [row for row in diff.unified if not isinstance(row, HunkHeader)]
    assert len(rows) == 3 + 2 + 3


def test_identical_versions_have_no_changes():
    diff = diff_code("x = 1\n", "x = 1\n", 1, 2)
    assert diff.unchanged and diff.unified == [] and diff.side_by_side == []


def test_carriage_returns_do_not_misalign_the_diff():
    diff = diff_code("a = 1\r\nb = 2\r\n", "a = 1\r\nb = 3\r\n", 1, 2)
    rows = [row for row in diff.unified if not isinstance(row, HunkHeader)]
    assert [plain(row.line) for row in rows if row.sign != " "] == ["b = 2", "b = 3"]
