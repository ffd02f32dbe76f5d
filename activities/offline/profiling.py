"""Reading a user's CSV and describing each column, the likely target and the identifiers."""

from __future__ import annotations

import csv
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from activities.offline.names import name_words, normalize
from activities.offline.target import infer_target, infer_task_type
from workflows.models import ColumnProfile, DatasetProfile

ENCODINGS = ("utf-8-sig", "latin-1")  # latin-1 decodes any byte, so reading never fails on it
DELIMITERS = (",", ";", "\t", "|")
MAX_SAMPLE_VALUES = 5
MAX_SAMPLE_CHARS = 60
MAX_CLASSES_IN_BALANCE = 100

# A string column is free text (not a category) past this many distinct values...
TEXT_MIN_UNIQUE = 50
# ...when most of its values are distinct, or when its values are long.
TEXT_UNIQUE_RATIO = 0.5
TEXT_MEAN_LENGTH = 50

_BOOLEAN_WORDS = [{"yes", "no"}, {"true", "false"}, {"y", "n"}, {"t", "f"}]
_DATE_LIKE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})([ T]\d{1,2}:\d{2}.*)?\s*$"
)
# Column names that mean "row identifier" on their own (compared without separators).
_ID_NAMES = frozenset(
    "id uuid guid rownumber rownum rowid index recordid serial serialnumber key".split()
)


def _sniff_delimiter(path: Path, encoding: str) -> str:
    """The candidate delimiter that splits the header into the most fields."""
    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        header = handle.readline()
    counts = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the comma, listed first
    return best if counts[best] > 1 else ","


def read_csv_sample(path: Path, nrows: int | None = None) -> pd.DataFrame:
    """Read the CSV (or its first `nrows` rows), trying UTF-8 before Latin-1."""
    last_error: Exception | None = None
    for encoding in ENCODINGS:
        try:
            return pd.read_csv(
                path,
                sep=_sniff_delimiter(path, encoding),
                encoding=encoding,
                nrows=nrows,
                low_memory=False,
            )
        except UnicodeDecodeError as exc:
            last_error = exc
        except pd.errors.EmptyDataError as exc:
            raise ValueError(f"{path.name} is empty: no header row and no data") from exc
        except pd.errors.ParserError as exc:
            raise ValueError(f"{path.name} is not a readable CSV file: {exc}") from exc
    raise ValueError(f"{path.name} could not be decoded as text: {last_error}")


def _count_rows(path: Path) -> int:
    """Data rows counted as newlines (approximate if quoted values hold line breaks)."""
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)  # minus the header


def _finite(value: object) -> float | None:
    """A JSON-safe float: NaN, infinities and non-numbers become None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text if len(text) <= MAX_SAMPLE_CHARS else text[: MAX_SAMPLE_CHARS - 1] + "…"


def _numeric_from_text(values: pd.Series) -> pd.Series | None:
    """The numbers in a text column that holds numbers (blanks allowed), else None."""
    stripped = values.dropna().astype(str).str.strip()
    stripped = stripped[stripped != ""]
    if stripped.empty:
        return None
    parsed = pd.to_numeric(stripped, errors="coerce")
    if parsed.notna().mean() < 0.95:
        return None
    return pd.to_numeric(values.astype(str).str.strip(), errors="coerce")


def _looks_datetime(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(500)
    if sample.empty or sample.str.match(_DATE_LIKE).mean() < 0.9:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= 0.9)


def _kind(series: pd.Series) -> tuple[str, pd.Series | None]:
    """The column's kind, and its numbers when they must be parsed out of text."""
    non_null = series.dropna()
    if pd.api.types.is_bool_dtype(series):
        return "boolean", None
    if pd.api.types.is_numeric_dtype(series):
        if non_null.nunique() == 2 and set(non_null.unique().tolist()) <= {0, 1}:
            return "boolean", None
        return "numeric", None
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime", None
    lowered = {str(v).strip().lower() for v in non_null.unique()[:3]}
    if non_null.nunique() == 2 and any(lowered <= pair for pair in _BOOLEAN_WORDS):
        return "boolean", None
    numbers = _numeric_from_text(series)
    if numbers is not None:
        return "numeric", numbers
    if _looks_datetime(series):
        return "datetime", None
    unique = non_null.nunique()
    mean_length = non_null.astype(str).str.len().mean() if len(non_null) else 0.0
    if unique > TEXT_MIN_UNIQUE and (
        unique > TEXT_UNIQUE_RATIO * len(non_null) or mean_length > TEXT_MEAN_LENGTH
    ):
        return "text", None
    return "categorical", None


def _profile_column(name: str, series: pd.Series) -> tuple[ColumnProfile, pd.Series]:
    """The column's profile and the values it is analysed as (numbers parsed out of text)."""
    kind, numbers = _kind(series)
    values = numbers if numbers is not None else series
    non_null = values.dropna()
    profile = ColumnProfile(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        dtype=str(series.dtype),
        missing=int(values.isna().sum()),
        unique=int(non_null.nunique()),
        sample_values=[_as_text(v) for v in pd.unique(non_null)[:MAX_SAMPLE_VALUES]],
    )
    as_float = non_null.astype(float) if kind == "numeric" else pd.Series(dtype=float)
    # Statistics over the finite values: one infinity would make them all meaningless.
    as_float = as_float[np.isfinite(as_float)]
    if len(as_float):
        profile.mean = _finite(as_float.mean())
        profile.std = _finite(as_float.std()) if len(as_float) > 1 else None
        profile.min = _finite(as_float.min())
        profile.max = _finite(as_float.max())
    return profile, values


def looks_like_id_name(name: str) -> bool:
    """ "id", "customerID", "user_id", "RowNumber", "Unnamed: 0" and the like."""
    norm = normalize(name)
    words = [w.lower() for w in name_words(name)]
    return (
        norm in _ID_NAMES
        or norm.startswith("unnamed")
        or (bool(words) and (words[-1] in {"id", "uuid", "guid"} or words[0] == "id"))
    )


def _is_id(profile: ColumnProfile, values: pd.Series) -> bool:
    non_null = values.dropna()
    if len(non_null) < 2:
        return False
    unique_ratio = profile.unique / len(non_null)
    # A named identifier must also vary like one: "store_id" with ten stores is a category.
    if looks_like_id_name(profile.name) and unique_ratio >= 0.5:
        return True
    if unique_ratio < 1.0 or len(non_null) < 20:
        return False
    if profile.kind in ("text", "categorical"):
        # Distinct short tokens ("7590-VHVEG") are keys; distinct sentences are text.
        as_text = non_null.astype(str)
        return bool(as_text.str.len().mean() <= 40 and as_text.str.contains(" ").mean() <= 0.5)
    if pd.api.types.is_integer_dtype(values):
        return bool(non_null.is_monotonic_increasing or non_null.is_monotonic_decreasing)
    return False


def _is_whole(values: pd.Series) -> bool:
    non_null = values.dropna()
    if pd.api.types.is_integer_dtype(non_null) or pd.api.types.is_bool_dtype(non_null):
        return True
    if not pd.api.types.is_numeric_dtype(non_null):
        return False
    numbers = non_null.to_numpy(dtype=float)
    numbers = numbers[np.isfinite(numbers)]
    return bool(np.all(np.mod(numbers, 1.0) == 0.0))


def class_balance(values: pd.Series) -> dict[str, int]:
    """Rows per class, largest first, keyed by the label as text."""
    counts = values.dropna().value_counts()
    return {_as_text(label): int(n) for label, n in counts.head(MAX_CLASSES_IN_BALANCE).items()}


def profile_csv(path: str | Path, user_goal: str, sample_rows: int = 200_000) -> DatasetProfile:
    """Profile a CSV file: its columns, the target the goal asks for, the task and the ids."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dataset not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name} is empty (0 bytes)")
    if sample_rows < 1:
        raise ValueError("sample_rows must be at least 1")

    frame = read_csv_sample(path, nrows=sample_rows + 1)
    sampled = len(frame) > sample_rows
    frame = frame.iloc[:sample_rows]
    if frame.shape[1] < 2:
        raise ValueError(
            f"{path.name} has {frame.shape[1]} column(s); a model needs a target and at least "
            "one feature (is the file comma-, semicolon- or tab-separated?)"
        )
    if frame.empty:
        raise ValueError(f"{path.name} has a header but no data rows")

    columns: list[ColumnProfile] = []
    values_by_name: dict[str, pd.Series] = {}
    for name in frame.columns:
        profile, values = _profile_column(str(name), frame[name])
        columns.append(profile)
        values_by_name[profile.name] = values

    id_columns = [c.name for c in columns if _is_id(c, values_by_name[c.name])]
    target = infer_target(user_goal, columns, id_columns)
    id_columns = [c for c in id_columns if c != target]
    target_profile = next(c for c in columns if c.name == target)
    target_values = values_by_name[target]
    task_type = infer_task_type(target_profile, user_goal, _is_whole(target_values))

    return DatasetProfile(
        rows=_count_rows(path) if sampled else len(frame),
        columns=columns,
        sampled=sampled,
        target=target,
        task_type=task_type,
        id_columns=id_columns,
        class_balance=class_balance(target_values) if task_type == "classification" else None,
    )
