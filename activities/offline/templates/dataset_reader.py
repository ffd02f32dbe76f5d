"""Reading the dataset file whatever its format: CSV (plain, gzip or zip) or Parquet.

The format is told by the file's first bytes, not its name, because the sandbox may present
it under any name. With `sample_rows`, a table larger than that is read in chunks and only a
random sample of that many rows is kept (memory stays bounded however large the file); with
`stratify_by` too, each value of that column keeps its share of the rows, and every value
present keeps at least two rows when it has them, so stratified splits still work.
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


def _csv_options(path: str, fmt: str, encoding: str) -> dict[str, Any]:
    """pandas' options for this CSV: the separator that splits the header into the most
    fields (a comma on ties), the encoding and the compression."""
    with _open_text(path, fmt, encoding) as handle:
        header = handle.readline()
    counts = {sep: len(next(csv.reader([header], delimiter=sep), [])) for sep in ",;\t|"}
    sep = max(counts, key=lambda s: counts[s]) if max(counts.values()) > 1 else ","
    compression = {"gzip": "gzip", "zip": "zip"}.get(fmt)
    return {"sep": sep, "encoding": encoding, "compression": compression, "low_memory": False}


def _chunks(path: str, fmt: str, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(READ_CHUNK_ROWS, columns=columns):
            yield batch.to_pandas()
        return
    for encoding in ("utf-8-sig", "latin-1"):  # latin-1 decodes any byte
        started = False
        try:
            options = _csv_options(path, fmt, encoding)
            for chunk in pd.read_csv(path, usecols=columns, chunksize=READ_CHUNK_ROWS, **options):
                started = True
                yield chunk
            return
        except UnicodeDecodeError:
            if started:  # rows already handed on: starting over would repeat them
                raise SystemExit(f"{path} is not valid {encoding} past its first rows") from None


def _read_whole(path: str, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(path)
    for encoding in ("utf-8-sig", "latin-1"):  # latin-1 decodes any byte
        try:
            return pd.read_csv(path, **_csv_options(path, fmt, encoding))
        except UnicodeDecodeError:
            continue
    raise SystemExit(f"could not decode {path}")


def _quotas(path: str, fmt: str, column: str, sample_rows: int) -> dict[Any, int] | None:
    """Rows to keep per value of `column`: its share of `sample_rows`, at least two."""
    counts = pd.Series(dtype="int64")
    for chunk in _chunks(path, fmt, [column]):
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
    path: str, sample_rows: int | None = None, stratify_by: str | None = None, seed: int = 42
) -> pd.DataFrame:
    """The dataset, or a (stratified) random sample of `sample_rows` rows of it, in file order."""
    fmt = dataset_format(path)
    if sample_rows is None:
        return _read_whole(path, fmt)
    quotas = _quotas(path, fmt, stratify_by, sample_rows) if stratify_by else None
    rng = np.random.default_rng(seed)
    kept: dict[Any, pd.DataFrame] = {}
    position = 0
    for chunk in _chunks(path, fmt):
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
