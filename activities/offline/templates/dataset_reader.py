"""Reading the dataset file whatever its format: CSV (plain, gzip or zip) or Parquet.

The format is told by the file's first bytes, not its name, because the sandbox may present
it under any name. With `sample_rows`, a table larger than that is read in chunks and only a
random sample of that many rows is kept (memory stays bounded however large the file); with
`stratify_by` too, each value of that column keeps its share of the rows, and every value
present keeps at least two rows when it has them, so stratified splits still work.

The CSV dialect (delimiter, encoding) is decided once, by profiling, and the generated scripts
pass it in. Without it (code a model wrote calling `load_dataset(path)`), the reader sniffs the
header and tries UTF-8 then Latin-1 as a fallback.
"""

import csv
import gzip
import io
import zipfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pandas as pd

READ_CHUNK_ROWS = 100_000
# Past this many distinct values a column is no label to stratify by: sample uniformly.
MAX_STRATA = 1_000


def dataset_format(path: str) -> str:
    """ "parquet", "gzip", "zip" or "csv", from the file's first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return "csv"


def _open_text(path: str, fmt: str, encoding: str) -> IO[str]:
    if fmt == "gzip":
        return gzip.open(path, "rt", encoding=encoding, newline="")
    if fmt == "zip":
        archive = zipfile.ZipFile(path)
        inner = archive.open(archive.namelist()[0])
        return io.TextIOWrapper(inner, encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _sniffed_delimiter(path: str, fmt: str, encoding: str) -> str:
    """The separator that splits the header into the most fields (a comma on ties)."""
    with _open_text(path, fmt, encoding) as handle:
        header = handle.readline()
    counts = {sep: len(next(csv.reader([header], delimiter=sep), [])) for sep in ",;\t|"}
    return max(counts, key=lambda s: counts[s]) if max(counts.values()) > 1 else ","


def _encodings(encoding: str | None) -> tuple[str, ...]:
    """The encodings to try in turn: the profile's, or UTF-8 then Latin-1 (which decodes any
    byte). UTF-8 is read as "utf-8-sig" so a byte-order mark never joins the first name."""
    if encoding is None:
        return ("utf-8-sig", "latin-1")
    return ("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding,)


def _csv_options(path: str, fmt: str, encoding: str, delimiter: str | None) -> dict[str, Any]:
    """pandas' options for this CSV: the separator, the encoding and the compression."""
    sep = delimiter if delimiter is not None else _sniffed_delimiter(path, fmt, encoding)
    compression = {"gzip": "gzip", "zip": "zip"}.get(fmt)
    return {"sep": sep, "encoding": encoding, "compression": compression, "low_memory": False}


def _chunks(
    path: str,
    fmt: str,
    columns: list[str] | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(READ_CHUNK_ROWS, columns=columns):
            yield batch.to_pandas()
        return
    for attempt in _encodings(encoding):
        started = False
        try:
            options = _csv_options(path, fmt, attempt, delimiter)
            for chunk in pd.read_csv(path, usecols=columns, chunksize=READ_CHUNK_ROWS, **options):
                started = True
                yield chunk
            return
        except UnicodeDecodeError:
            if started:  # rows already handed on: starting over would repeat them
                raise SystemExit(f"{path} is not valid {attempt} past its first rows") from None
    raise SystemExit(f"could not decode {path} as {encoding}")


def _read_whole(path: str, fmt: str, delimiter: str | None, encoding: str | None) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(path)
    for attempt in _encodings(encoding):
        try:
            return pd.read_csv(path, **_csv_options(path, fmt, attempt, delimiter))
        except UnicodeDecodeError:
            continue
    raise SystemExit(f"could not decode {path}" + (f" as {encoding}" if encoding else ""))


def _quotas(
    path: str,
    fmt: str,
    column: str,
    sample_rows: int,
    delimiter: str | None,
    encoding: str | None,
) -> dict[Any, int] | None:
    """Rows to keep per value of `column`: its share of `sample_rows`, at least two."""
    counts = pd.Series(dtype="int64")
    for chunk in _chunks(path, fmt, [column], delimiter, encoding):
        counts = counts.add(chunk[column].value_counts(), fill_value=0)
        if len(counts) > MAX_STRATA:
            return None
    total = counts.sum()
    if total <= sample_rows:
        return {label: int(n) for label, n in counts.items()}
    return {
        label: int(min(n, max(2, round(sample_rows * n / total)))) for label, n in counts.items()
    }


def load_dataset(
    path: str,
    sample_rows: int | None = None,
    stratify_by: str | None = None,
    seed: int = 42,
    delimiter: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """The dataset, or a (stratified) random sample of `sample_rows` rows of it, in file order.

    `delimiter` and `encoding` are the CSV dialect profiling decided; None sniffs (fallback).
    """
    fmt = dataset_format(path)
    if sample_rows is None:
        return _read_whole(path, fmt, delimiter, encoding)
    quotas = (
        _quotas(path, fmt, stratify_by, sample_rows, delimiter, encoding) if stratify_by else None
    )
    rng = np.random.default_rng(seed)
    kept: dict[Any, pd.DataFrame] = {}
    position = 0
    for chunk in _chunks(path, fmt, None, delimiter, encoding):
        # Each row draws a random key; a stratum keeps the rows with the smallest keys, which
        # is a uniform sample of it, whatever order the file is in.
        chunk = chunk.assign(_key=rng.random(len(chunk)))
        chunk.index = pd.RangeIndex(position, position + len(chunk))
        position += len(chunk)
        # Rows without a value in the stratifying column (the target) have no stratum: the
        # training code drops them anyway.
        groups = chunk.groupby(chunk[stratify_by]) if quotas else [(None, chunk)]
        for label, rows in groups:
            quota = quotas.get(label, 0) if quotas else sample_rows
            if quota:
                both = pd.concat([kept[label], rows]) if label in kept else rows
                kept[label] = both.nsmallest(quota, "_key")
    if not kept:
        raise SystemExit(f"{path} has no rows")
    sample = pd.concat(list(kept.values())).sort_index().drop(columns="_key")
    print(f"Read a random sample of {len(sample):,} of {position:,} rows"
          + (f", stratified by {stratify_by!r}." if quotas else "."))  # fmt: skip
    return sample.reset_index(drop=True)
