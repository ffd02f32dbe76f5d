"""Describing a stored dataset column by column: one streaming DuckDB pass, bounded memory.

Every statistic covers the whole file (CSV, gzip-compressed CSV or Parquet), not its first
rows, and memory stays flat whatever the size: DuckDB streams the file through aggregates
under a memory limit, distinct counts are HyperLogLog estimates past a small file, and only a
few thousand cells of the file's head are ever held in Python (for sample values, dates and
the order of identifiers). The profile says what pandas will see when the generated code reads
the same file (`dtype`, column names), because that code is what uses it.

Deciding the target is not done here: see activities/column_plan.py.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import math
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from activities.column_names import name_words, normalize
from activities.dataset_formats import StoredFormat, stored_format_of
from workflows.models import ColumnProfile, DatasetProfile

DELIMITERS = (",", ";", "\t", "|")
MAX_SAMPLE_VALUES = 5
MAX_SAMPLE_CHARS = 60
MAX_CLASSES_IN_BALANCE = 100

# A string column is free text (not a category) past this many distinct values...
TEXT_MIN_UNIQUE = 50
# ...when most of its values are distinct, or when its values are long.
TEXT_UNIQUE_RATIO = 0.5
TEXT_MEAN_LENGTH = 50
# A text column is numbers stored as text when this share of its non-blank values parse.
NUMERIC_TEXT_SHARE = 0.95

# Distinct counts are DuckDB's HyperLogLog estimates (exact to about 50, then about 2% off):
# memory stays flat whatever the cardinality. Below this file size, the columns whose estimate
# says "nearly all distinct" (identifier candidates) are counted exactly, a few per pass since
# each exact count holds a hash table; above it "all distinct" allows for the estimate's error.
EXACT_DISTINCT_MAX_BYTES = 16 * 1024 * 1024
EXACT_DISTINCT_PER_PASS = 16
NEARLY_ALL_DISTINCT = 0.9
APPROX_ALL_DISTINCT = 0.97
# DuckDB's own budget; it spills to a temporary folder beyond it. With the interpreter and
# the library this keeps the whole process near 250 MB for a table of ordinary width. The CSV
# reader holds a vector of values per column, so a very wide table gets more.
MEMORY_LIMIT_MB = 160
MEMORY_PER_COLUMN_KB = 64
THREADS = 2
# Cells of the file's head read into Python (rows x columns), and the row bounds on that.
HEAD_CELLS = 100_000
HEAD_ROWS = (50, 2_000)
# Aggregates per pass: a very wide table is read in a few passes rather than planned as one
# enormous query.
MAX_AGGREGATES_PER_PASS = 3_000

# The strings pandas reads as missing by default; DuckDB is told the same, so a column's
# missing count and type agree with what the generated pandas code will see.
PANDAS_NA_STRINGS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
# Types DuckDB may give a CSV column. Booleans and dates stay text, as pandas reads them, so
# sample values keep the file's spelling; the kinds below are decided from the values.
CSV_TYPE_CANDIDATES = ("BIGINT", "DOUBLE", "VARCHAR")

_BOOLEAN_WORDS = [{"yes", "no"}, {"true", "false"}, {"y", "n"}, {"t", "f"}]
_DATE_LIKE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})([ T]\d{1,2}:\d{2}.*)?\s*$"
)
# Column names that mean "row identifier" on their own (compared without separators).
_ID_NAMES = frozenset(
    "id uuid guid rownumber rownum rowid index recordid serial serialnumber key".split()
)
_INTEGER_TYPES = frozenset(
    "TINYINT SMALLINT INTEGER BIGINT HUGEINT UTINYINT USMALLINT UINTEGER UBIGINT UHUGEINT".split()
)
_FLOAT_PREFIXES = ("FLOAT", "DOUBLE", "DECIMAL", "REAL")
_DATETIME_PREFIXES = ("DATE", "TIMESTAMP", "TIME")


# --- Reading the file -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """How DuckDB reads one stored file: a table function call with its options."""

    path: Path
    fmt: StoredFormat
    names: tuple[str, ...] = ()
    delimiter: str = ","
    encoding: str = "utf-8"

    def relation(self, whole_file_sniff: bool = False) -> str:
        quoted_path = _literal(str(self.path))
        if self.fmt is StoredFormat.PARQUET:
            return f"read_parquet({quoted_path})"
        options = [
            f"delim={_literal(self.delimiter)}",
            "header=true",
            f"names={_list(self.names)}",
            f"nullstr={_list(PANDAS_NA_STRINGS)}",
            f"auto_type_candidates={_list(CSV_TYPE_CANDIDATES)}",
            f"encoding={_literal(self.encoding)}",
        ]
        if whole_file_sniff:
            options.append("sample_size=-1")
        return f"read_csv({quoted_path}, {', '.join(options)})"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(item) for item in items) + "]"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def memory_limit_mb(columns: int) -> int:
    return max(MEMORY_LIMIT_MB, MEMORY_LIMIT_MB // 2 + columns * MEMORY_PER_COLUMN_KB // 1024)


@contextmanager
def _connection(spill_dir: Path, columns: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with a memory limit, spilling next to the dataset when it must."""
    with tempfile.TemporaryDirectory(prefix=".profile-", dir=spill_dir) as spill:
        con = duckdb.connect(
            config={
                "memory_limit": f"{memory_limit_mb(columns)}MB",
                "threads": THREADS,
                "temp_directory": spill,
            }
        )
        try:
            con.execute("SET enable_progress_bar = false")
            yield con
        finally:
            con.close()


def _open_text(path: Path, fmt: StoredFormat, encoding: str) -> io.TextIOBase:
    if fmt is StoredFormat.GZIP_CSV:
        return gzip.open(path, "rt", encoding=encoding, errors="strict", newline="")  # type: ignore[return-value]
    return path.open(encoding=encoding, errors="strict", newline="")  # type: ignore[return-value]


def _header_and_encoding(path: Path, fmt: StoredFormat) -> tuple[list[str], str, str]:
    """The header's fields, its delimiter and the text encoding, read as pandas would.

    Intake stores UTF-8; a file handed over directly may be Latin-1, which decodes any byte.
    """
    for encoding in ("utf-8", "latin-1"):
        try:
            with _open_text(path, fmt, encoding) as handle:
                head = handle.read(64 * 1024)
        except UnicodeDecodeError:
            continue
        except (OSError, EOFError) as error:
            raise ValueError(f"{path.name} could not be read: {error}") from error
        head = head.removeprefix("\ufeff")
        first_line = head.split("\n", 1)[0]
        counts = {d: len(next(csv.reader([first_line], delimiter=d), [])) for d in DELIMITERS}
        best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the comma, listed first
        delimiter = best if counts[best] > 1 else ","
        try:
            header = next(csv.reader(io.StringIO(head, newline=""), delimiter=delimiter), [])
        except csv.Error as error:
            raise ValueError(f"{path.name} is not a readable CSV file: {error}") from error
        return header, delimiter, encoding
    raise ValueError(f"{path.name} could not be decoded as text")  # latin-1 never gets here


def pandas_column_names(header: Sequence[str]) -> list[str]:
    """The names pandas gives a CSV header: blanks become "Unnamed: i", repeats "name.1"."""
    names: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(header):
        name = raw if raw != "" else f"Unnamed: {index}"
        base, count = name, 0
        while name in seen:
            count += 1
            name = f"{base}.{count}"
        seen.add(name)
        names.append(name)
    return names


def _source_for(path: Path) -> _Source:
    if not path.is_file():
        raise ValueError(f"dataset not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name} is empty (0 bytes)")
    fmt = stored_format_of(path)
    if fmt is StoredFormat.PARQUET:
        return _Source(path, fmt)
    header, delimiter, encoding = _header_and_encoding(path, fmt)
    if not any(field.strip() for field in header):
        raise ValueError(f"{path.name} is empty: no header row and no data")
    return _Source(path, fmt, tuple(pandas_column_names(header)), delimiter, encoding)


def _width(source: _Source) -> int:
    """The column count, known before DuckDB reads anything (Parquet: from its footer)."""
    if source.fmt is StoredFormat.PARQUET:
        import pyarrow.parquet as pq  # only Parquet needs it

        return len(pq.read_schema(source.path).names)
    return len(source.names)


def _run(con: duckdb.DuckDBPyConnection, source: _Source, build: Any, whole: bool) -> list[Any]:
    """Run the query `build(relation)` returns; a type guessed from the head that a later
    row contradicts makes DuckDB fail, and the query then runs again sniffing the whole file.
    """
    try:
        return con.execute(build(source.relation(whole))).fetchall()
    except duckdb.ConversionException:
        if whole:
            raise
        return _run(con, source, build, whole=True)


def _read_errors(path: Path) -> Any:
    @contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except duckdb.Error as error:
            # The reader's own words say which line and why; the first lines are enough.
            detail = " ".join(str(error).splitlines()[:3])
            raise ValueError(f"{path.name} is not a readable table: {detail}") from error

    return translated()


# --- The profile ------------------------------------------------------------------------------


@dataclass
class _ColumnFacts:
    """What the aggregate pass and the head sample found about one column."""

    name: str
    sql_type: str
    non_null: int = 0
    distinct: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    # Text columns only.
    non_blank: int = 0
    parsed: int = 0  # values that parse as numbers
    mean_length: float = 0.0
    spaced_share: float = 0.0
    lowest: str | None = None
    highest: str | None = None
    head: list[Any] | None = None

    @property
    def is_integer(self) -> bool:
        return self.sql_type in _INTEGER_TYPES

    @property
    def is_float(self) -> bool:
        return self.sql_type.startswith(_FLOAT_PREFIXES)

    @property
    def is_text(self) -> bool:
        return not (self.is_integer or self.is_float or self.is_datetime or self.is_boolean)

    @property
    def is_datetime(self) -> bool:
        return self.sql_type.startswith(_DATETIME_PREFIXES)

    @property
    def is_boolean(self) -> bool:
        return self.sql_type == "BOOLEAN"


def _aggregates(facts: _ColumnFacts) -> list[str]:
    column = _identifier(facts.name)
    parts = [f"count({column})", f"approx_count_distinct({column})"]
    if facts.is_integer or facts.is_float:
        finite = f"CASE WHEN isfinite({column}::DOUBLE) THEN {column}::DOUBLE END"
        parts += [f"avg({finite})", f"stddev_samp({finite})", f"min({finite})", f"max({finite})"]
    elif facts.is_text:
        text = f"{column}::VARCHAR"
        number = f"TRY_CAST(trim({text}) AS DOUBLE)"
        finite = f"CASE WHEN isfinite({number}) THEN {number} END"
        parts += [
            f"avg({finite})",
            f"stddev_samp({finite})",
            f"min({finite})",
            f"max({finite})",
            f"count(NULLIF(trim({text}), ''))",
            f"count({number})",
            f"avg(length({text}))",
            f"avg(CASE WHEN contains({text}, ' ') THEN 1.0 ELSE 0.0 END)",
            f"min({text})",
            f"max({text})",
        ]
    return parts


def _fill(facts: _ColumnFacts, values: Sequence[Any]) -> None:
    facts.non_null, facts.distinct = int(values[0]), int(values[1])
    if len(values) >= 6:
        facts.mean, facts.std, facts.min, facts.max = (_finite(v) for v in values[2:6])
    if len(values) == 12:
        facts.non_blank, facts.parsed = int(values[6]), int(values[7])
        facts.mean_length = float(values[8] or 0.0)
        facts.spaced_share = float(values[9] or 0.0)
        facts.lowest, facts.highest = values[10], values[11]


def profile_dataset(path: str | Path) -> DatasetProfile:
    """The profile of a stored dataset: rows, and each column's kind, counts and statistics.

    Raises ValueError, with a reason a person can act on, when the file is not a usable table.
    """
    path = Path(path)
    source = _source_for(path)
    exact = path.stat().st_size <= EXACT_DISTINCT_MAX_BYTES
    with _read_errors(path), _connection(path.parent, _width(source)) as con:
        described = _run(con, source, lambda rel: f"DESCRIBE SELECT * FROM {rel}", False)
        facts = [_ColumnFacts(str(row[0]), str(row[1]).upper()) for row in described]
        if len(facts) < 2:
            raise ValueError(
                f"{path.name} has {len(facts)} column(s); a model needs a target and at least "
                "one feature (is the file comma-, semicolon- or tab-separated?)"
            )
        rows = _aggregate_pass(con, source, facts)
        if rows == 0:
            raise ValueError(f"{path.name} has a header but no data rows")
        if exact:
            _count_distinct_exactly(con, source, facts)
        _read_head(con, source, facts)

    columns = [_column_profile(f, rows) for f in facts]
    ids = [c.name for c, f in zip(columns, facts, strict=True) if _is_id(c, f, rows, exact)]
    return DatasetProfile(
        rows=rows,
        columns=columns,
        id_columns=ids,
        delimiter=source.delimiter,
        encoding=source.encoding,
    )


def _aggregate_pass(
    con: duckdb.DuckDBPyConnection, source: _Source, facts: list[_ColumnFacts]
) -> int:
    """Fill in each column's counts and statistics; returns the row count."""
    batches: list[list[int]] = [[]]
    size = 0
    for index, fact in enumerate(facts):
        cost = len(_aggregates(fact))
        if batches[-1] and size + cost > MAX_AGGREGATES_PER_PASS:
            batches.append([])
            size = 0
        batches[-1].append(index)
        size += cost
    rows = 0
    for batch in batches:
        selected = ["count(*)"]
        spans: list[tuple[int, int, int]] = []
        for index in batch:
            parts = _aggregates(facts[index])
            spans.append((index, len(selected), len(selected) + len(parts)))
            selected += parts
        query = ", ".join(selected)
        # Order does not matter to aggregates; not keeping it lets DuckDB stream freely.
        con.execute("SET preserve_insertion_order = false")
        (result,) = _run(con, source, lambda rel, q=query: f"SELECT {q} FROM {rel}", False)
        rows = int(result[0])
        for index, start, end in spans:
            _fill(facts[index], result[start:end])
    return rows


def _count_distinct_exactly(
    con: duckdb.DuckDBPyConnection, source: _Source, facts: list[_ColumnFacts]
) -> None:
    """Exact distinct counts for the columns whose estimate says nearly all values differ."""
    candidates = [f for f in facts if f.non_null and f.distinct >= NEARLY_ALL_DISTINCT * f.non_null]
    for start in range(0, len(candidates), EXACT_DISTINCT_PER_PASS):
        batch = candidates[start : start + EXACT_DISTINCT_PER_PASS]
        query = ", ".join(f"count(DISTINCT {_identifier(f.name)})" for f in batch)
        (counts,) = _run(con, source, lambda rel, q=query: f"SELECT {q} FROM {rel}", False)
        for fact, count in zip(batch, counts, strict=True):
            fact.distinct = int(count)


def _read_head(con: duckdb.DuckDBPyConnection, source: _Source, facts: list[_ColumnFacts]) -> None:
    """The first rows, in file order: sample values, date spellings, identifiers' order."""
    low, high = HEAD_ROWS
    limit = max(low, min(high, HEAD_CELLS // max(len(facts), 1)))
    con.execute("SET preserve_insertion_order = true")
    head = _run(con, source, lambda rel: f"SELECT * FROM {rel} LIMIT {limit}", False)
    for index, fact in enumerate(facts):
        fact.head = [row[index] for row in head]


def _finite(value: object) -> float | None:
    """A JSON-safe float: NaN, infinities and non-numbers become None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_text(value: object) -> str:
    """A value as a short label: whole floats without ".0", long text clipped."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text if len(text) <= MAX_SAMPLE_CHARS else text[: MAX_SAMPLE_CHARS - 1] + "…"


def _parse_number(value: object) -> float | None:
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _kind(facts: _ColumnFacts) -> str:
    if facts.is_boolean:
        return "boolean"
    if facts.is_integer or facts.is_float:
        if facts.distinct == 2 and facts.min == 0.0 and facts.max == 1.0:
            return "boolean"
        return "numeric"
    if facts.is_datetime:
        return "datetime"
    if facts.distinct == 2 and facts.lowest is not None and facts.highest is not None:
        lowered = {str(facts.lowest).strip().lower(), str(facts.highest).strip().lower()}
        if any(lowered <= pair for pair in _BOOLEAN_WORDS):
            return "boolean"
    if facts.non_blank and facts.parsed >= NUMERIC_TEXT_SHARE * facts.non_blank:
        return "numeric"
    head = [str(v) for v in facts.head or [] if v is not None][:500]
    if head and sum(bool(_DATE_LIKE.match(v)) for v in head) >= 0.9 * len(head):
        return "datetime"
    if facts.distinct > TEXT_MIN_UNIQUE and (
        facts.distinct > TEXT_UNIQUE_RATIO * facts.non_null or facts.mean_length > TEXT_MEAN_LENGTH
    ):
        return "text"
    return "categorical"


def _pandas_dtype(facts: _ColumnFacts, missing: int) -> str:
    """The dtype pandas gives this column when the generated code reads the file."""
    if facts.is_integer:
        return "int64" if missing == 0 else "float64"
    if facts.is_float:
        return "float64"
    if facts.is_boolean:
        return "bool" if missing == 0 else "object"
    if facts.sql_type.startswith("TIMESTAMP"):
        return "datetime64[ns]"
    return "object"


def _column_profile(facts: _ColumnFacts, rows: int) -> ColumnProfile:
    kind = _kind(facts)
    numbers_in_text = kind == "numeric" and facts.is_text
    # Numbers stored as text: what does not parse (a blank, "n/a") is missing to the model.
    present = facts.parsed if numbers_in_text else facts.non_null
    samples: list[str] = []
    for value in facts.head or []:
        if value is None:
            continue
        shown = value
        if numbers_in_text:
            shown = _parse_number(value)
            if shown is None:
                continue
        label = as_text(shown)
        if label not in samples:
            samples.append(label)
        if len(samples) == MAX_SAMPLE_VALUES:
            break
    profile = ColumnProfile(
        name=facts.name,
        kind=kind,  # type: ignore[arg-type]
        dtype=_pandas_dtype(facts, rows - facts.non_null),
        missing=max(rows - present, 0),
        unique=min(facts.distinct, present),
        sample_values=samples,
    )
    if kind == "numeric":
        profile.mean, profile.min, profile.max = facts.mean, facts.min, facts.max
        profile.std = facts.std
    return profile


def looks_like_id_name(name: str) -> bool:
    """ "id", "customerID", "user_id", "RowNumber", "Unnamed: 0" and the like."""
    norm = normalize(name)
    words = [w.lower() for w in name_words(name)]
    return (
        norm in _ID_NAMES
        or norm.startswith("unnamed")
        or (bool(words) and (words[-1] in {"id", "uuid", "guid"} or words[0] == "id"))
    )


def _is_id(profile: ColumnProfile, facts: _ColumnFacts, rows: int, exact: bool) -> bool:
    present = rows - profile.missing
    if present < 2:
        return False
    unique_ratio = profile.unique / present
    # A named identifier must also vary like one: "store_id" with ten stores is a category.
    if looks_like_id_name(profile.name) and unique_ratio >= 0.5:
        return True
    if unique_ratio < (1.0 if exact else APPROX_ALL_DISTINCT) or present < 20:
        return False
    if profile.kind in ("text", "categorical"):
        # Distinct short tokens ("7590-VHVEG") are keys; distinct sentences are text.
        return facts.mean_length <= 40 and facts.spaced_share <= 0.5
    if facts.is_integer and profile.missing == 0:
        # The file's order, seen in its head: a counter runs one way.
        head = [v for v in facts.head or [] if v is not None]
        rising = all(a <= b for a, b in itertools.pairwise(head))
        falling = all(a >= b for a, b in itertools.pairwise(head))
        return rising or falling
    return False


# --- The target's classes ---------------------------------------------------------------------


def class_counts(path: str | Path, column: str) -> dict[str, int]:
    """Rows per value of `column` over the whole file, largest first, keyed by the label as text.

    At most MAX_CLASSES_IN_BALANCE values; one more pass over the file, reading one column.
    """
    path = Path(path)
    source = _source_for(path)
    if column not in source.names and source.fmt is not StoredFormat.PARQUET:
        raise ValueError(f"{path.name} has no column {column!r}")
    name = _identifier(column)
    with _read_errors(path), _connection(path.parent, _width(source)) as con:
        con.execute("SET preserve_insertion_order = false")
        counted = _run(
            con,
            source,
            lambda rel: (
                f"SELECT {name}, count(*) AS n FROM {rel} WHERE {name} IS NOT NULL "
                f"GROUP BY {name} ORDER BY n DESC, {name}::VARCHAR "
                f"LIMIT {MAX_CLASSES_IN_BALANCE}"
            ),
            False,
        )
    balance: dict[str, int] = {}
    for value, count in counted:
        label = as_text(value)
        balance[label] = balance.get(label, 0) + int(count)
    return balance
