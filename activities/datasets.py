"""Dataset intake: fetch a run's CSV once, check it really is one, store it, and profile it."""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import io
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactStore, is_valid_workflow_id
from activities.executors import run_with_heartbeats
from activities.offline.profiling import DELIMITERS, profile_csv
from settings import Settings
from workflows.contract import RETRYABLE_ERRORS, ActivityName, ErrorType
from workflows.models import DatasetInfo, DatasetProfile, DatasetRequest

DATASET_FILE = "dataset.csv"
META_SUFFIX = ".meta.json"  # the sidecar that makes a finished download recognisable
PROFILE_STEP = "dataset"  # artifact folder for the profile, next to the steps' folders

_CHUNK = 256 * 1024
_SNIFF_MIN_BYTES = 1024
_SNIFF_MAX_BYTES = 64 * 1024  # a wide header can be longer than the first KB
_SNIFF_MIN_LINES = 3
_REJECTED_CONTENT_TYPES = ("text/html", "application/xhtml+xml", "application/json")

Profiler = Callable[[Path, str], DatasetProfile]


def dataset_error(error_type: ErrorType, message: str, url: str | None = None) -> ApplicationError:
    """An ApplicationError whose retryability follows its type, with the (redacted) URL.

    Only a network blip or a busy or failing server is retryable; everything else is a property
    of the URL or of the file and fails the same way every time.
    """
    where = f" ({redact_url(url)})" if url else ""
    return ApplicationError(
        f"{message}{where}",
        type=error_type.value,
        non_retryable=error_type not in RETRYABLE_ERRORS,
    )


def redact_url(url: str) -> str:
    """The URL without what could be a secret: user info and query-string values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    # Signed URLs (S3, GCS, SAS tokens) carry their credentials in the query string.
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class StoredDataset:
    path: Path
    size_bytes: int
    sha256: str


class DatasetActivities:
    """The fetch_dataset activity; the profiler is injectable so tests can count or replace it."""

    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore | None = None,
        profiler: Profiler = profile_csv,
    ) -> None:
        self.settings = settings
        self.store = store
        self.profiler = profiler

    @activity.defn(name=ActivityName.FETCH_DATASET)
    async def fetch_dataset(self, request: DatasetRequest) -> DatasetInfo:
        if not is_valid_workflow_id(request.workflow_id):
            raise dataset_error(
                ErrorType.DATASET_NOT_ALLOWED, f"invalid workflow id {request.workflow_id!r}"
            )
        destination = self.settings.datasets_dir / request.workflow_id / DATASET_FILE
        # Beats by the clock, not per chunk: a server pausing between bytes for longer than the
        # heartbeat timeout (but less than the read timeout) must not look like a dead worker.
        stored = await run_with_heartbeats(
            store_dataset(
                request.dataset_url,
                destination,
                max_bytes=self.settings.max_dataset_bytes,
                timeout_seconds=self.settings.dataset_timeout_seconds,
                allow_local=self.settings.allow_local_datasets,
            )
        )
        try:
            profile = await run_with_heartbeats(
                asyncio.to_thread(self.profiler, stored.path, request.user_goal)
            )
        except ValueError as error:  # the profiler's way of saying "not a usable table"
            raise dataset_error(
                ErrorType.DATASET_NOT_CSV, str(error), request.dataset_url
            ) from error
        if len(profile.columns) > self.settings.max_dataset_columns:
            # Every agent call carries the profile; past this it would near Temporal's payload
            # limit, so say so plainly instead of failing later with a server error.
            raise dataset_error(
                ErrorType.DATASET_TOO_LARGE,
                f"the table has {len(profile.columns)} columns; the limit is "
                f"{self.settings.max_dataset_columns} (MAX_DATASET_COLUMNS). Select the columns "
                "that matter for the goal and try again",
                request.dataset_url,
            )
        if self.store is not None:
            self.store.write_text(
                request.workflow_id, PROFILE_STEP, 1, "profile.json", profile.model_dump_json()
            )
        return DatasetInfo(
            source_url=redact_url(request.dataset_url),
            file_path=str(stored.path),
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            profile=profile,
        )


async def store_dataset(
    url: str,
    destination: Path,
    *,
    max_bytes: int,
    timeout_seconds: float,
    allow_local: bool,
) -> StoredDataset:
    """Fetch url into destination (UTF-8 CSV) unless an identical earlier fetch is there.

    The bytes go to a temporary file next to the destination and are renamed into place only
    when complete and checked, so a failure (or a crash: leftovers are swept on the next try)
    never leaves a partial dataset.csv behind.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    meta_path = destination.with_name(destination.name + META_SUFFIX)
    source_key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    previous = await asyncio.to_thread(_verified_previous, destination, meta_path, source_key)
    if previous is not None:
        return previous

    # From here on the old file (if any) is being replaced: its record must not vouch for it.
    meta_path.unlink(missing_ok=True)
    _sweep_partial_files(destination)
    temp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
    sink = _CsvSink(temp, url, max_bytes)
    try:
        scheme = urlsplit(url).scheme.lower()
        if scheme in {"http", "https"}:
            await _fetch_http(url, sink, timeout_seconds)
        elif scheme in {"", "file"}:
            if not allow_local:
                raise dataset_error(
                    ErrorType.DATASET_NOT_ALLOWED,
                    "local dataset paths are disabled (ALLOW_LOCAL_DATASETS=false)",
                    url,
                )
            await _fetch_local(url, sink)
        else:
            raise dataset_error(
                ErrorType.DATASET_NOT_ALLOWED,
                f"unsupported URL scheme {scheme!r}: use http(s) or a local path",
                url,
            )
        await asyncio.to_thread(sink.complete)
        os.replace(temp, destination)
    finally:
        sink.close()
        temp.unlink(missing_ok=True)

    stored = StoredDataset(destination, sink.size_bytes, sink.sha256)
    meta = {"source": source_key, "size_bytes": stored.size_bytes, "sha256": stored.sha256}
    meta_temp = meta_path.with_name(f".{meta_path.name}.{uuid.uuid4().hex}.part")
    meta_temp.write_text(json.dumps(meta))
    os.replace(meta_temp, meta_path)
    return stored


def _verified_previous(destination: Path, meta_path: Path, source_key: str) -> StoredDataset | None:
    """The earlier fetch of the same URL, if its file is still exactly what was recorded."""
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("source") != source_key:
            return None
        if destination.stat().st_size != meta["size_bytes"]:
            return None
        if _sha256_of(destination) != meta["sha256"]:
            return None
        return StoredDataset(destination, int(meta["size_bytes"]), str(meta["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _sweep_partial_files(destination: Path) -> None:
    for leftover in destination.parent.glob(f".{destination.name}.*.part"):
        leftover.unlink(missing_ok=True)


# --- Sources ----------------------------------------------------------------------------------


async def _fetch_http(url: str, sink: _CsvSink, timeout_seconds: float) -> None:
    # The timeout bounds every wait (connecting, and each pause between bytes), so a stalled
    # server fails fast; the total duration is bounded by the activity's start-to-close timeout.
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=True,
        max_redirects=5,
        headers={"Accept": "text/csv, text/plain;q=0.9, */*;q=0.5"},
    )
    try:
        async with client, client.stream("GET", url) as response:
            _check_response(response, url, sink.max_bytes)
            async for chunk in response.aiter_bytes():
                sink.feed(chunk)
    except httpx.TimeoutException as error:
        raise dataset_error(
            ErrorType.DATASET_TIMEOUT,
            f"dataset server did not respond within {timeout_seconds:g} s ({type(error).__name__})",
            url,
        ) from None
    except httpx.TooManyRedirects:
        raise dataset_error(ErrorType.DATASET_UNREACHABLE, "too many redirects", url) from None
    except httpx.TransportError as error:
        raise dataset_error(
            ErrorType.DATASET_UNREACHABLE,
            f"could not download the dataset: {type(error).__name__}: {error}",
            url,
        ) from None


def _check_response(response: httpx.Response, url: str, max_bytes: int) -> None:
    status = response.status_code
    if status in {404, 410}:
        raise dataset_error(ErrorType.DATASET_NOT_FOUND, f"dataset not found (HTTP {status})", url)
    if status in {401, 403, 451}:
        raise dataset_error(
            ErrorType.DATASET_NOT_ALLOWED,
            f"access to the dataset was refused (HTTP {status}); is the URL public?",
            url,
        )
    if status in {408, 429} or status >= 500:
        raise dataset_error(
            ErrorType.DATASET_UNREACHABLE,
            f"dataset server is failing or busy (HTTP {status}); will retry",
            url,
        )
    if status >= 400:
        raise dataset_error(
            ErrorType.DATASET_UNREADABLE, f"dataset server refused the request (HTTP {status})", url
        )
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _REJECTED_CONTENT_TYPES:
        raise dataset_error(
            ErrorType.DATASET_NOT_CSV,
            f"the URL serves {content_type}, not a CSV file (a web page rather than the file "
            "itself? use the raw/download link)",
            url,
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes, url)


async def _fetch_local(url: str, sink: _CsvSink) -> None:
    handle = await asyncio.to_thread(_open_local, url, sink.max_bytes)
    with handle:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            sink.feed(chunk)


def _open_local(url: str, max_bytes: int) -> BinaryIO:
    path = Path(unquote(urlsplit(url).path)) if url.lower().startswith("file:") else Path(url)
    path = path.expanduser()
    if not path.is_file():
        raise dataset_error(ErrorType.DATASET_NOT_FOUND, "no such local file", url)
    size = path.stat().st_size
    if size > max_bytes:
        raise _too_large(size, max_bytes, url)
    return path.open("rb")


def _too_large(size: int, max_bytes: int, url: str) -> ApplicationError:
    return dataset_error(
        ErrorType.DATASET_TOO_LARGE,
        f"dataset is larger than the {max_bytes / 1e6:g} MB limit (MAX_DATASET_BYTES)"
        + (f": {size / 1e6:.1f} MB" if size > max_bytes else ""),
        url,
    )


# --- Checking and writing ---------------------------------------------------------------------


class _CsvSink:
    """Receives the raw bytes, refuses what is not a delimited text table, and writes UTF-8.

    The first KB (more for wide headers) decides: its encoding, and whether it looks like rows
    with one consistent column count. Files in another encoding are transcoded, so every stored
    dataset.csv reads with pandas' defaults in the generated code.
    """

    def __init__(self, path: Path, url: str, max_bytes: int) -> None:
        self.handle: BinaryIO = path.open("wb")
        self.url = url
        self.max_bytes = max_bytes
        self.source_bytes = 0
        self.size_bytes = 0
        self._digest = hashlib.sha256()
        self._pending = bytearray()  # bytes held back until the sniff has decided
        self._decoder: codecs.IncrementalDecoder | None = None
        self._passthrough = False  # already UTF-8: write the original bytes

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def feed(self, chunk: bytes) -> None:
        self.source_bytes += len(chunk)
        if self.source_bytes > self.max_bytes:
            raise _too_large(self.source_bytes, self.max_bytes, self.url)
        if self._decoder is None:
            self._pending += chunk
            if len(self._pending) < _SNIFF_MAX_BYTES and (
                len(self._pending) < _SNIFF_MIN_BYTES
                or self._pending.count(b"\n") < _SNIFF_MIN_LINES
            ):
                return
            chunk, self._pending = bytes(self._pending), bytearray()
            self._start(chunk, final=False)
        self._write(chunk, final=False)

    def complete(self) -> None:
        """The input has ended: check what is still held back, and make the file durable."""
        if self._decoder is None:
            sample, self._pending = bytes(self._pending), bytearray()
            self._start(sample, final=True)
            self._write(sample, final=True)
        else:
            self._write(b"", final=True)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def close(self) -> None:
        self.handle.close()

    def _start(self, data: bytes, final: bool) -> None:
        # Decide on the head only, as a reader opening the file would; the rest is checked as it
        # is written (a later invalid byte fails then).
        sample = data[:_SNIFF_MAX_BYTES]
        final = final and len(data) <= _SNIFF_MAX_BYTES
        if not sample.strip():
            raise dataset_error(ErrorType.DATASET_EMPTY, "dataset is empty", self.url)
        encoding = _detect_encoding(sample, final)
        if encoding is None:
            raise dataset_error(
                ErrorType.DATASET_NOT_CSV, "dataset looks like a binary file, not a CSV", self.url
            )
        text = codecs.getincrementaldecoder(encoding)().decode(sample, final=final)
        _check_looks_like_csv(text, final, self.url)
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self._passthrough = encoding == "utf-8"

    def _write(self, data: bytes, final: bool) -> None:
        assert self._decoder is not None
        try:
            text = self._decoder.decode(data, final=final)
        except UnicodeDecodeError as error:
            raise dataset_error(
                ErrorType.DATASET_UNREADABLE,
                f"dataset is not valid UTF-8 past its first bytes ({error.reason} near byte "
                f"{self.source_bytes - len(data) + error.start}); save it as UTF-8",
                self.url,
            ) from None
        out = data if self._passthrough else text.encode("utf-8")
        self.handle.write(out)
        self._digest.update(out)
        self.size_bytes += len(out)


def _detect_encoding(sample: bytes, final: bool) -> str | None:
    """The sample's encoding, or None when it is binary rather than text."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        return None
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=final)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Spreadsheet exports from Windows; Latin-1 takes the few bytes cp1252 leaves undefined.
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _check_looks_like_csv(text: str, final: bool, url: str) -> None:
    """Refuse HTML, JSON and prose: the sample must be rows with one consistent column count."""
    stripped = text.lstrip()
    if stripped.startswith("<"):
        raise dataset_error(
            ErrorType.DATASET_NOT_CSV, "dataset looks like an HTML/XML page, not a CSV", url
        )
    if stripped.startswith(("{", "[")):
        raise dataset_error(ErrorType.DATASET_NOT_CSV, "dataset looks like JSON, not a CSV", url)
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\t\r\n")
    if controls > len(text) // 100:
        raise dataset_error(
            ErrorType.DATASET_NOT_CSV, "dataset looks like a binary file, not a CSV", url
        )

    # The same delimiters the profiler chooses from.
    rows_by_delimiter = {d: _sample_rows(text, d, final) for d in DELIMITERS}
    consistent = {
        d: rows
        for d, rows in rows_by_delimiter.items()
        if rows and len(rows[0]) >= 2 and all(len(row) == len(rows[0]) for row in rows)
    }
    if not consistent:
        widest = max(rows_by_delimiter.values(), key=lambda rows: len(rows[0]) if rows else 0)
        if not widest or len(widest[0]) < 2:
            reason = "no ',', ';', tab or '|' separated columns in its first line"
        else:
            counts = sorted({len(row) for row in widest})
            reason = f"its first rows have different numbers of columns ({counts})"
        raise dataset_error(ErrorType.DATASET_NOT_CSV, f"dataset is not a CSV: {reason}", url)
    if final and all(len(rows) < 2 for rows in consistent.values()):
        raise dataset_error(ErrorType.DATASET_EMPTY, "dataset has a header but no rows", url)


def _sample_rows(text: str, delimiter: str, final: bool) -> list[list[str]]:
    """The sample's non-blank records; the last one is dropped when it may be cut short."""
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error:  # e.g. a "field" longer than the csv module accepts: not a table
        return []
    rows = [row for row in records if any(field.strip() for field in row)]
    if not final and len(rows) > 1:
        rows = rows[:-1]
    return rows
