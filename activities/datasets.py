"""Dataset intake: fetch a run's dataset once, check it is a table, store it, and profile it.

A dataset may be a CSV, a gzip-compressed CSV, a zip archive holding exactly one CSV, or a
Parquet file (activities/dataset_formats.py tells them apart by their first bytes). Compressed
input is checked as it is decompressed, and its decompressed size counts against
MAX_DATASET_BYTES, so an archive that inflates without end (a zip bomb) is refused part way.

Where a dataset may come from is decided here too: http(s) URLs to public addresses (or hosts
named in DATASET_ALLOWED_HOSTS), local paths inside DATASET_ROOTS, and `upload://ds-…`
references to files uploaded through the API. Credentials in a URL are used for the download
and never shown: logs, errors and the returned DatasetInfo carry the redacted form.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import io
import json
import logging
import os
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agent_profile import profile_for_agents
from activities.artifacts import ArtifactStore, is_valid_workflow_id
from activities.column_plan import profile_for_goal
from activities.dataset_formats import (
    MAGIC_BYTES,
    STORED_FILE_NAMES,
    SourceFormat,
    StoredFormat,
    format_from_magic,
    format_from_name,
)
from activities.dataset_network import (
    AddressRefused,
    HostAllowList,
    HostUnresolvable,
    TooManyRedirects,
    guarded_get,
)
from activities.dataset_paths import (
    LocalPathRefused,
    check_local_path,
    local_path_of,
    open_checked,
    parse_roots,
)
from activities.heartbeats import run_with_heartbeats
from activities.profiling import DELIMITERS
from activities.storage import (
    LocalStorage,
    Storage,
    publish_dataset,
    sha256_of,
    storage_from_settings,
)
from activities.uploads import (
    UPLOAD_SCHEME,
    UploadMissing,
    dataset_id_from_reference,
    open_upload,
    read_record,
)
from settings import Settings
from workflows.contract import RETRYABLE_ERRORS, ActivityName, ErrorType
from workflows.models import DatasetInfo, DatasetProfile, DatasetRequest
from workflows.redaction import redact_dataset_url

DATASET_FILE = StoredFormat.CSV.file_name  # the stored name of a plain (or unzipped) CSV
META_SUFFIX = ".meta.json"  # the sidecar that makes a finished download recognisable
PROFILE_STEP = "dataset"  # artifact folder for the profile, next to the steps' folders
# Fewer rows with a target value than this cannot be split into training and evaluation data.
MIN_USABLE_ROWS = 10

_CHUNK = 256 * 1024
_SNIFF_MIN_BYTES = 1024
_SNIFF_MAX_BYTES = 64 * 1024  # a wide header can be longer than the first KB
_SNIFF_MIN_LINES = 3
_REJECTED_CONTENT_TYPES = ("text/html", "application/xhtml+xml", "application/json")
# Recompressing a transcoded gzip CSV: fast beats small for a file read a few times.
_GZIP_LEVEL = 1
# Members of a zip that are not data: folders and macOS resource forks.
_ZIP_JUNK_PREFIXES = ("__MACOSX/",)

Profiler = Callable[[Path, str], DatasetProfile]


class _RedactRequestUrls(logging.Filter):
    """httpx logs each request's whole URL at INFO; a dataset URL's query may hold its token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_dataset_url(str(arg)) if isinstance(arg, httpx.URL) else arg
                for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactRequestUrls())


def dataset_error(
    error_type: ErrorType, message: str, url: str | None = None, *, non_retryable: bool = False
) -> ApplicationError:
    """An ApplicationError whose retryability follows its type, with the (redacted) URL.

    Only a network blip or a busy or failing server is retryable; everything else is a property
    of the URL or of the file and fails the same way every time. `non_retryable` overrides the
    type for the one case that shares a retryable type but would only fail again (a deadline).
    """
    where = f" ({redact_dataset_url(url)})" if url else ""
    return ApplicationError(
        f"{message}{where}",
        type=error_type.value,
        non_retryable=non_retryable or error_type not in RETRYABLE_ERRORS,
    )


def _scrub(text: str, url: str) -> str:
    """text (say, an exception's message) without the URL's credentials or query values."""
    parts = urlsplit(url)
    secrets = [parts.username, parts.password, parts.query]
    secrets += [item.partition("=")[2] for item in parts.query.split("&")]
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, unquote(secret)}:
            if len(form) >= 3:
                text = text.replace(form, "***")
    return text


@dataclass(frozen=True)
class StoredDataset:
    path: Path
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class SourcePolicy:
    """Where intake may read from and how long and how much it may read."""

    max_bytes: int
    read_timeout_seconds: float
    deadline_seconds: float
    allow_local: bool
    roots: list[Path]
    data_dir: Path
    uploads_dir: Path
    allowed_hosts: HostAllowList
    # Where uploads are read from (activities/storage.py); None: the folder DATA_DIR.
    storage: Storage | None = None

    @classmethod
    def from_settings(cls, settings: Settings, storage: Storage | None = None) -> SourcePolicy:
        return cls(
            max_bytes=settings.max_dataset_bytes,
            read_timeout_seconds=settings.dataset_timeout_seconds,
            deadline_seconds=settings.dataset_download_deadline_seconds,
            allow_local=settings.allow_local_datasets,
            roots=parse_roots(settings.dataset_roots),
            data_dir=settings.data_dir,
            uploads_dir=settings.uploads_dir,
            allowed_hosts=HostAllowList.parse(settings.dataset_allowed_hosts),
            storage=storage,
        )


class DatasetActivities:
    """The fetch_dataset activity; the profiler is injectable so tests can count or replace it."""

    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore | None = None,
        profiler: Profiler = profile_for_goal,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.profiler = profiler
        # Uploads are read from it, and each fetched dataset is stored in it for other workers.
        self.storage = storage or storage_from_settings(settings)

    @activity.defn(name=ActivityName.FETCH_DATASET)
    async def fetch_dataset(self, request: DatasetRequest) -> DatasetInfo:
        if not is_valid_workflow_id(request.workflow_id):
            raise dataset_error(
                ErrorType.DATASET_NOT_ALLOWED, f"invalid workflow id {request.workflow_id!r}"
            )
        shown_url = redact_dataset_url(request.dataset_url)
        activity.logger.info("Fetching the dataset", extra={"dataset_url": shown_url})
        folder = self.settings.datasets_dir / request.workflow_id
        # Beats by the clock, not per chunk: a server pausing between bytes for longer than the
        # heartbeat timeout (but less than the read timeout) must not look like a dead worker.
        stored = await run_with_heartbeats(
            store_dataset(
                request.dataset_url,
                folder,
                SourcePolicy.from_settings(self.settings, self.storage),
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
        _check_enough_target_values(profile, request.dataset_url)
        if profile.rows > self.settings.training_sample_rows:
            # Decided once, here: both brains train on a (stratified) sample of this many rows.
            profile.training_sample_rows = self.settings.training_sample_rows
        if self.store is not None:
            # The whole profile stays an artifact; agents (and history) get a bounded summary.
            self.store.write_text(
                request.workflow_id, PROFILE_STEP, 1, "profile.json", profile.model_dump_json()
            )
        profile = profile_for_agents(profile, self.settings.agent_profile_columns)
        activity.logger.info(
            "Dataset stored",
            extra={"dataset_url": shown_url, "size_bytes": stored.size_bytes, "rows": profile.rows},
        )
        # Other workers read it from storage (a no-op when storage is this very folder).
        storage_key = await run_with_heartbeats(
            asyncio.to_thread(
                publish_dataset, self.storage, request.workflow_id, stored.path, stored.sha256
            )
        )
        return DatasetInfo(
            source_url=shown_url,
            file_path=str(stored.path),
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            profile=profile,
            storage_key=storage_key,
        )


def _check_enough_target_values(profile: DatasetProfile, url: str) -> None:
    """Refuse a table whose target column is empty, or too sparse to train and evaluate on.

    Caught here, at intake, so such a run fails at once with a reason instead of going through
    the agents and the approval only to end without a model.
    """
    column = profile.column(profile.target) if profile.target else None
    if column is None:
        return
    # The profile's missing count is over the rows it read (all of them unless sampled).
    usable = max(profile.rows - column.missing, 0)
    if usable == 0:
        raise dataset_error(
            ErrorType.DATASET_EMPTY,
            f"the target column {column.name!r} (inferred from the goal) has no values; fill "
            "it in, or name the column to predict in the goal",
            url,
        )
    if usable < MIN_USABLE_ROWS:
        raise dataset_error(
            ErrorType.DATASET_EMPTY,
            f"only {usable} row(s) have a value in the target column {column.name!r}; at least "
            f"{MIN_USABLE_ROWS} are needed to train and evaluate a model",
            url,
        )


async def store_dataset(url: str, folder: Path, policy: SourcePolicy) -> StoredDataset:
    """Fetch url into folder (as dataset.csv, .csv.gz or .parquet) unless an identical earlier
    fetch is there.

    The bytes go to a temporary file in the folder and are renamed into place only when
    complete and checked, so a failure (or a crash: leftovers are swept on the next try) never
    leaves a partial dataset behind.
    """
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    source_key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    # The source is checked before an earlier copy is reused: settings may have changed since.
    opener, name_hint = _source_opener(url, policy)
    previous = await asyncio.to_thread(_verified_previous, folder, source_key)
    if previous is not None:
        return previous

    # From here on the old file (if any) is being replaced: its record must not vouch for it.
    for name in STORED_FILE_NAMES:
        (folder / (name + META_SUFFIX)).unlink(missing_ok=True)
    _sweep_partial_files(folder)
    temp = folder / f".dataset.{uuid.uuid4().hex}.part"
    sink = _DatasetSink(temp, url, policy.max_bytes, name_hint)
    try:
        if opener is None:
            await _fetch_http(url, sink, policy)
        else:
            await _fetch_local(opener, sink)
        stored_format = await asyncio.to_thread(sink.complete)
        destination = folder / stored_format.file_name
        os.replace(temp, destination)
    finally:
        sink.close()
        temp.unlink(missing_ok=True)
    for name in STORED_FILE_NAMES:  # an earlier fetch in another format is stale now
        if name != destination.name:
            (folder / name).unlink(missing_ok=True)

    stored = StoredDataset(destination, sink.size_bytes, sink.sha256)
    meta_path = destination.with_name(destination.name + META_SUFFIX)
    meta = {"source": source_key, "size_bytes": stored.size_bytes, "sha256": stored.sha256}
    meta_temp = meta_path.with_name(f".{meta_path.name}.{uuid.uuid4().hex}.part")
    meta_temp.write_text(json.dumps(meta))
    os.replace(meta_temp, meta_path)
    return stored


def _verified_previous(folder: Path, source_key: str) -> StoredDataset | None:
    """The earlier fetch of the same URL, if its file is still exactly what was recorded."""
    for name in STORED_FILE_NAMES:
        destination = folder / name
        try:
            meta = json.loads(destination.with_name(name + META_SUFFIX).read_text())
            if meta.get("source") != source_key:
                continue
            if destination.stat().st_size != meta["size_bytes"]:
                continue
            if sha256_of(destination) != meta["sha256"]:
                continue
            return StoredDataset(destination, int(meta["size_bytes"]), str(meta["sha256"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _sweep_partial_files(folder: Path) -> None:
    for leftover in folder.glob(".dataset*.part"):
        leftover.unlink(missing_ok=True)


# --- Sources ----------------------------------------------------------------------------------

LocalOpener = Callable[[], BinaryIO]


def _source_opener(url: str, policy: SourcePolicy) -> tuple[LocalOpener | None, str]:
    """How to open a local source once it is checked (None for http(s)), and the source's file
    name, whose extension makes a format error clearer. Refuses the rest."""
    scheme = urlsplit(url).scheme.lower() if "://" in url or url.lower().startswith("file:") else ""
    if scheme in {"http", "https"}:
        return None, urlsplit(url).path
    if url.lower().startswith(UPLOAD_SCHEME):
        return _upload_opener(url, policy)
    if scheme in {"", "file"}:
        return _local_opener(url, policy), url
    raise dataset_error(
        ErrorType.DATASET_NOT_ALLOWED,
        f"unsupported URL scheme {scheme!r}: use http(s), a local path or an uploaded dataset_id",
        url,
    )


def _upload_opener(url: str, policy: SourcePolicy) -> tuple[LocalOpener, str]:
    # The API checked that the caller may use this upload before it started the run.
    dataset_id = dataset_id_from_reference(url) or ""
    storage = policy.storage or LocalStorage(policy.data_dir)
    missing = dataset_error(
        ErrorType.DATASET_NOT_FOUND,
        "no uploaded dataset with this id (was it deleted, or do the API and the worker use "
        "different storage: STORAGE_URL, or DATA_DIR without it?)",
        url,
    )
    try:
        filename = read_record(storage, dataset_id).filename
    except UploadMissing:
        raise missing from None

    def open_uploaded() -> BinaryIO:
        try:
            handle, size = open_upload(storage, dataset_id)
        except UploadMissing:
            raise missing from None
        if size > policy.max_bytes:
            handle.close()
            raise _too_large(size, policy.max_bytes, url)
        return handle

    return open_uploaded, filename


def _local_opener(url: str, policy: SourcePolicy) -> LocalOpener:
    if not policy.allow_local:
        raise dataset_error(
            ErrorType.DATASET_NOT_ALLOWED,
            "local dataset paths are disabled (ALLOW_LOCAL_DATASETS=false); use an http(s) URL "
            "or upload the file with POST /datasets",
            url,
        )
    try:
        resolved = check_local_path(local_path_of(url), policy.roots, policy.data_dir)
    except LocalPathRefused as refused:
        raise dataset_error(ErrorType.DATASET_NOT_ALLOWED, str(refused), url) from None

    def open_local() -> BinaryIO:
        if not resolved.is_file():
            raise dataset_error(ErrorType.DATASET_NOT_FOUND, "no such local file", url)
        try:
            handle = open_checked(resolved, policy.roots, policy.data_dir)
        except LocalPathRefused as refused:
            raise dataset_error(ErrorType.DATASET_NOT_ALLOWED, str(refused), url) from None
        return _within_limit(handle, url, policy.max_bytes)

    return open_local


def _within_limit(handle: BinaryIO, url: str, max_bytes: int) -> BinaryIO:
    size = os.fstat(handle.fileno()).st_size
    if size > max_bytes:
        handle.close()
        raise _too_large(size, max_bytes, url)
    return handle


async def _fetch_local(opener: LocalOpener, sink: _DatasetSink) -> None:
    handle = await asyncio.to_thread(opener)
    with handle:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            sink.feed(chunk)


async def _fetch_http(url: str, sink: _DatasetSink, policy: SourcePolicy) -> None:
    # The read timeout bounds every wait (connecting, each pause between bytes), so a stalled
    # server fails fast and is retried; the deadline bounds the whole download, so a server
    # that trickles a byte at a time cannot hold the worker. A deadline hit is not retried: the
    # same server would trickle again, and each attempt would take the whole deadline.
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(policy.read_timeout_seconds),
        follow_redirects=False,  # guarded_get follows them, checking each hop
        trust_env=False,  # a proxy from the environment would undo the address check
        headers={
            "Accept": "text/csv, application/vnd.apache.parquet, application/gzip, "
            "application/zip, text/plain;q=0.9, */*;q=0.5"
        },
    )
    try:
        async with asyncio.timeout(policy.deadline_seconds):
            async with client, guarded_get(client, url, policy.allowed_hosts) as response:
                _check_response(response, url, sink.max_bytes)
                async for chunk in response.aiter_bytes():
                    sink.feed(chunk)
    except TimeoutError:
        raise dataset_error(
            ErrorType.DATASET_TIMEOUT,
            f"the download did not finish within {policy.deadline_seconds:g} s "
            "(DATASET_DOWNLOAD_DEADLINE_SECONDS); the server sends too slowly. Raise the "
            "setting, or host the file somewhere faster",
            url,
            non_retryable=True,
        ) from None
    except httpx.TimeoutException as error:
        raise dataset_error(
            ErrorType.DATASET_TIMEOUT,
            f"dataset server did not respond within {policy.read_timeout_seconds:g} s "
            f"(DATASET_TIMEOUT_SECONDS; {type(error).__name__})",
            url,
        ) from None
    except AddressRefused as refused:
        raise dataset_error(ErrorType.DATASET_NOT_ALLOWED, _scrub(str(refused), url), url) from None
    except HostUnresolvable as error:
        raise dataset_error(ErrorType.DATASET_UNREACHABLE, _scrub(str(error), url), url) from None
    except TooManyRedirects:
        raise dataset_error(ErrorType.DATASET_UNREACHABLE, "too many redirects", url) from None
    except httpx.TransportError as error:
        raise dataset_error(
            ErrorType.DATASET_UNREACHABLE,
            _scrub(f"could not download the dataset: {type(error).__name__}: {error}", url),
            url,
        ) from None
    except httpx.InvalidURL as error:
        raise dataset_error(
            ErrorType.DATASET_NOT_ALLOWED, _scrub(f"invalid dataset URL: {error}", url), url
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


def _too_large(size: int, max_bytes: int, url: str, decompressed: bool = False) -> ApplicationError:
    if decompressed:  # a compressed file's content counts, or a small archive could be a bomb
        return dataset_error(
            ErrorType.DATASET_TOO_LARGE,
            f"the compressed dataset unpacks to more than the {max_bytes / 1e6:g} MB limit "
            "(MAX_DATASET_BYTES); unpacking stopped there",
            url,
        )
    return dataset_error(
        ErrorType.DATASET_TOO_LARGE,
        f"dataset is larger than the {max_bytes / 1e6:g} MB limit (MAX_DATASET_BYTES)"
        + (f": {size / 1e6:.1f} MB" if size > max_bytes else ""),
        url,
    )


# --- Checking and writing ---------------------------------------------------------------------


class _StoredFile:
    """The file being written: counts and hashes exactly the bytes that are stored."""

    def __init__(self, path: Path) -> None:
        self.handle: BinaryIO = path.open("wb")
        self.size_bytes = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if data:
            self.handle.write(data)
            self.digest.update(data)
            self.size_bytes += len(data)

    def finish(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def close(self) -> None:
        self.handle.close()


class _DatasetSink:
    """Receives the raw bytes, tells the format from the first ones, and hands them on.

    CSV text is checked and stored as UTF-8; gzip is decompressed to be checked the same way
    (and kept compressed); a zip is spooled, then its one CSV is unpacked and checked; Parquet
    is stored and then opened to check it is a readable table.
    """

    def __init__(self, path: Path, url: str, max_bytes: int, name_hint: str = "") -> None:
        self.out = _StoredFile(path)
        self.url = url
        self.max_bytes = max_bytes
        self.name_hint = name_hint
        self.source_bytes = 0
        self._head = bytearray()
        self._format: SourceFormat | None = None
        self._csv: _CsvSink | None = None
        self._gzip: _GzipCsvSink | None = None

    @property
    def size_bytes(self) -> int:
        return self.out.size_bytes

    @property
    def sha256(self) -> str:
        return self.out.digest.hexdigest()

    def feed(self, chunk: bytes) -> None:
        self.source_bytes += len(chunk)
        if self.source_bytes > self.max_bytes:
            raise _too_large(self.source_bytes, self.max_bytes, self.url)
        if self._format is None:
            self._head += chunk
            if len(self._head) < MAGIC_BYTES:
                return
            chunk, self._head = bytes(self._head), bytearray()
            self._start(chunk)
        self._pass_on(chunk)

    def complete(self) -> StoredFormat:
        """The input has ended: finish checking, make the file durable, say what it holds."""
        if self._format is None:
            head, self._head = bytes(self._head), bytearray()
            self._start(head)
            self._pass_on(head)
        assert self._format is not None
        if self._format is SourceFormat.CSV:
            assert self._csv is not None
            self._csv.complete()
            self.out.finish()
            return StoredFormat.CSV
        if self._format is SourceFormat.GZIP_CSV:
            assert self._gzip is not None
            self._gzip.complete()
            self.out.finish()
            return StoredFormat.GZIP_CSV
        self.out.finish()
        if self._format is SourceFormat.ZIP_CSV:
            return self._unzip()
        _check_parquet(self.out_path, self.url)
        return StoredFormat.PARQUET

    def close(self) -> None:
        self.out.close()

    @property
    def out_path(self) -> Path:
        return Path(self.out.handle.name)

    def _start(self, head: bytes) -> None:
        self._format = format_from_magic(head)
        promised = format_from_name(self.name_hint)
        if self._format is SourceFormat.CSV and promised not in (None, SourceFormat.CSV):
            # Said to be compressed or Parquet, but the bytes are not: say so plainly.
            raise dataset_error(
                ErrorType.DATASET_NOT_CSV,
                f"the file's name says {promised.value}, but its first bytes are not a "
                f"{promised.value} file's; is it damaged, or misnamed?",
                self.url,
            )
        if self._format is SourceFormat.CSV:
            self._csv = _CsvSink(self.url, self.max_bytes, self.out.write)
        elif self._format is SourceFormat.GZIP_CSV:
            self._gzip = _GzipCsvSink(self.url, self.max_bytes, self.out)

    def _pass_on(self, chunk: bytes) -> None:
        if self._csv is not None:
            self._csv.feed(chunk)
        elif self._gzip is not None:
            self._gzip.feed(chunk)
        else:  # zip and Parquet are checked whole, once they are here
            self.out.write(chunk)

    def _unzip(self) -> StoredFormat:
        """Replace the spooled archive by the one CSV inside it, checked as it is unpacked."""
        archive = self.out_path
        unpacked = archive.with_name(archive.name.removesuffix(".part") + ".unzipped.part")
        try:
            with zipfile.ZipFile(archive) as zipped:
                member = _the_one_csv(zipped, self.url)
                self.out = _StoredFile(unpacked)
                sink = _CsvSink(self.url, self.max_bytes, self.out.write, decompressed=True)
                with zipped.open(member) as handle:
                    while chunk := handle.read(_CHUNK):
                        sink.feed(chunk)
                sink.complete()
                self.out.finish()
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
            raise dataset_error(
                ErrorType.DATASET_UNREADABLE,
                f"the zip archive could not be read: {error}",
                self.url,
            ) from None
        except RuntimeError as error:  # an encrypted member
            raise dataset_error(
                ErrorType.DATASET_UNREADABLE,
                f"the zip archive could not be read ({error}); send it without a password",
                self.url,
            ) from None
        except BaseException:
            unpacked.unlink(missing_ok=True)
            raise
        finally:
            self.out.close()
        os.replace(unpacked, archive)
        return StoredFormat.CSV


def _the_one_csv(zipped: zipfile.ZipFile, url: str) -> zipfile.ZipInfo:
    members = [
        info
        for info in zipped.infolist()
        if not info.is_dir() and not info.filename.startswith(_ZIP_JUNK_PREFIXES)
    ]
    if len(members) != 1:
        listed = ", ".join(repr(m.filename) for m in members[:5])
        more = f" and {len(members) - 5} more" if len(members) > 5 else ""
        raise dataset_error(
            ErrorType.DATASET_NOT_CSV,
            f"a zip archive must hold exactly one CSV file; this one holds {len(members)} "
            f"file(s){': ' + listed + more if members else ''}. Zip the one table alone",
            url,
        )
    return members[0]


def _check_parquet(path: Path, url: str) -> None:
    """Refuse a Parquet file pyarrow cannot open, or one that is not a table to learn from."""
    import pyarrow.parquet as pq  # only Parquet intake needs it

    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as error:  # pyarrow's errors share no useful base class
        raise dataset_error(
            ErrorType.DATASET_UNREADABLE, f"the Parquet file could not be read: {error}", url
        ) from None
    if metadata.num_columns < 2:
        raise dataset_error(
            ErrorType.DATASET_NOT_CSV,
            f"the Parquet file has {metadata.num_columns} column(s); a model needs a target and "
            "at least one feature",
            url,
        )
    if metadata.num_rows == 0:
        raise dataset_error(ErrorType.DATASET_EMPTY, "the Parquet file has no rows", url)


class _GzipCsvSink:
    """A gzip-compressed CSV: decompressed to be checked, stored compressed.

    UTF-8 content keeps the original compressed bytes; another encoding is transcoded and
    compressed again, so the stored file reads with pandas' defaults too.
    """

    def __init__(self, url: str, max_bytes: int, out: _StoredFile) -> None:
        self.url = url
        self.out = out
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._csv = _CsvSink(url, max_bytes, self._transcoded, decompressed=True)
        self._held: list[bytes] = []  # compressed bytes held until the CSV check has decided
        self._deflate: zlib._Compress | None = None

    def feed(self, chunk: bytes) -> None:
        if not self._csv.decided or self._csv.passthrough:
            self._held.append(chunk)
        for piece in self._inflated(chunk):
            self._csv.feed(piece)
        self._release()

    def complete(self) -> None:
        if not self._inflate.eof:
            raise dataset_error(
                ErrorType.DATASET_UNREADABLE,
                "the gzip file ends early (truncated download or damaged file)",
                self.url,
            )
        self._csv.complete()
        self._release()
        if self._deflate is not None:
            self.out.write(self._deflate.flush())

    def _inflated(self, chunk: bytes) -> Iterator[bytes]:
        """The decompressed bytes in bounded pieces: a chunk of a gzip bomb inflates a
        thousandfold, and the size check must see it before memory does."""
        pending = chunk
        try:
            while pending:
                yield self._inflate.decompress(pending, _CHUNK)
                pending = self._inflate.unconsumed_tail
                # Several gzip members one after another are one file to gzip readers.
                if not pending and self._inflate.eof and self._inflate.unused_data:
                    pending = self._inflate.unused_data
                    self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as error:
            raise dataset_error(
                ErrorType.DATASET_UNREADABLE, f"the gzip file is damaged: {error}", self.url
            ) from None

    def _release(self) -> None:
        if self._csv.decided and self._csv.passthrough and self._held:
            for held in self._held:
                self.out.write(held)
            self._held.clear()
        elif self._csv.decided and not self._csv.passthrough:
            self._held.clear()

    def _transcoded(self, text: bytes) -> None:
        if self._csv.passthrough:
            return  # the original compressed bytes are stored instead
        if self._deflate is None:
            self._deflate = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self.out.write(self._deflate.compress(text))


class _CsvSink:
    """Receives CSV bytes, refuses what is not a delimited text table, and emits UTF-8.

    The first KB (more for wide headers) decides: its encoding, and whether it looks like rows
    with one consistent column count. Files in another encoding are transcoded, so every stored
    CSV reads with pandas' defaults in the generated code.
    """

    def __init__(
        self, url: str, max_bytes: int, emit: Callable[[bytes], None], decompressed: bool = False
    ) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self.emit = emit
        self.decompressed = decompressed  # counting inflated bytes: the zip-bomb guard
        self.source_bytes = 0
        self._pending = bytearray()  # bytes held back until the sniff has decided
        self._decoder: codecs.IncrementalDecoder | None = None
        self.passthrough = False  # already UTF-8: emit the original bytes

    @property
    def decided(self) -> bool:
        return self._decoder is not None

    def feed(self, chunk: bytes) -> None:
        self.source_bytes += len(chunk)
        if self.source_bytes > self.max_bytes:
            raise _too_large(self.source_bytes, self.max_bytes, self.url, self.decompressed)
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
        """The input has ended: check what is still held back."""
        if self._decoder is None:
            sample, self._pending = bytes(self._pending), bytearray()
            self._start(sample, final=True)
            self._write(sample, final=True)
        else:
            self._write(b"", final=True)

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
                ErrorType.DATASET_NOT_CSV,
                "dataset looks like a binary file, not a CSV (CSV, gzip- or zip-compressed "
                "CSV and Parquet are read)",
                self.url,
            )
        text = codecs.getincrementaldecoder(encoding)().decode(sample, final=final)
        _check_looks_like_csv(text, final, self.url)
        self._decoder = codecs.getincrementaldecoder(encoding)()
        self.passthrough = encoding == "utf-8"

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
        self.emit(data if self.passthrough else text.encode("utf-8"))


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
