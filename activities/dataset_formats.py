"""The dataset formats the service reads, told apart by their first bytes and named on disk.

A source may be a CSV, a gzip-compressed CSV, a zip archive holding one CSV, or a Parquet
file. The stored copy keeps its format, except a zip, whose one CSV is stored unpacked
(neither DuckDB nor pyarrow can stream out of a zip): `dataset.csv`, `dataset.csv.gz` or
`dataset.parquet`. The magic bytes decide; a name's extension only makes errors clearer.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path, PurePosixPath

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # an archive with no members at all
PARQUET_MAGIC = b"PAR1"
MAGIC_BYTES = 4  # enough to tell every format above apart


class SourceFormat(StrEnum):
    """What arrived."""

    CSV = "csv"
    GZIP_CSV = "csv.gz"
    ZIP_CSV = "zip"
    PARQUET = "parquet"


class StoredFormat(StrEnum):
    """What is kept in DATA_DIR and handed to the profiler and the generated code."""

    CSV = "csv"
    GZIP_CSV = "csv.gz"
    PARQUET = "parquet"

    @property
    def file_name(self) -> str:
        return f"dataset.{self.value}"


STORED_FILE_NAMES = tuple(fmt.file_name for fmt in StoredFormat)

# Extensions a source's name may carry, and what they promise.
_EXTENSIONS = {
    ".csv": SourceFormat.CSV,
    ".tsv": SourceFormat.CSV,
    ".txt": SourceFormat.CSV,
    ".gz": SourceFormat.GZIP_CSV,
    ".zip": SourceFormat.ZIP_CSV,
    ".parquet": SourceFormat.PARQUET,
    ".pq": SourceFormat.PARQUET,
}


def format_from_magic(head: bytes) -> SourceFormat:
    """The format the first bytes announce; anything unannounced is treated as CSV text."""
    if head.startswith(GZIP_MAGIC):
        return SourceFormat.GZIP_CSV
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return SourceFormat.ZIP_CSV
    if head.startswith(PARQUET_MAGIC):
        return SourceFormat.PARQUET
    return SourceFormat.CSV


def format_from_name(name: str) -> SourceFormat | None:
    """The format a file name or URL path promises by its extension, if it promises one."""
    suffix = PurePosixPath(name.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    return _EXTENSIONS.get(suffix)


def stored_format_of(path: Path) -> StoredFormat:
    """The format of a stored (or any local) file, read from its first bytes."""
    with path.open("rb") as handle:
        head = handle.read(MAGIC_BYTES)
    found = format_from_magic(head)
    if found is SourceFormat.ZIP_CSV:
        raise ValueError(f"{path.name} is a zip archive; intake stores the CSV inside it")
    return StoredFormat(found.value)
