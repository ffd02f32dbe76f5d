"""Uploaded datasets: `uploads/<dataset_id>/` in storage, the file and a record of its owner.

The API writes them (POST /datasets) and the worker reads them when a run's dataset is an
`upload://ds-…` reference; both reach the same storage (activities/storage.py): DATA_DIR/uploads
when it is a shared folder, or object storage, where the API and the workers share no disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from activities.storage import UPLOADS_PREFIX, Storage, StorageKeyMissing, join_key

UPLOAD_SCHEME = "upload://"
DATASET_ID_PATTERN = r"^ds-[0-9a-f]{24}$"
UPLOAD_FILE = "dataset.csv"
RECORD_FILE = "upload.json"

_DATASET_ID = re.compile(DATASET_ID_PATTERN)


class UploadTooLarge(Exception):
    """The upload passed the byte limit; nothing of it is kept."""


class UploadMissing(Exception):
    """No upload with this id (or not one the caller may use)."""


@dataclass(frozen=True)
class UploadRecord:
    dataset_id: str
    owner: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: str


def new_dataset_id() -> str:
    # Unguessable, so an id seen in a log does not invite probing; ownership is still checked.
    return f"ds-{secrets.token_hex(12)}"


def is_valid_dataset_id(dataset_id: str) -> bool:
    return bool(_DATASET_ID.match(dataset_id))


def upload_reference(dataset_id: str) -> str:
    """What a run is given as its dataset_url; intake resolves it in the uploads folder."""
    return f"{UPLOAD_SCHEME}{dataset_id}"


def dataset_id_from_reference(url: str) -> str | None:
    """The id in an `upload://…` reference, or None when url is not one (or a malformed one)."""
    if not url.lower().startswith(UPLOAD_SCHEME):
        return None
    dataset_id = url[len(UPLOAD_SCHEME) :]
    return dataset_id if is_valid_dataset_id(dataset_id) else None


def clean_filename(name: str | None) -> str:
    """The client's file name as a label only: no folders, no control characters, bounded."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base[:255] or UPLOAD_FILE


def upload_key(dataset_id: str, file_name: str) -> str:
    return join_key(UPLOADS_PREFIX, dataset_id, file_name)


class UploadWriter:
    """Receives an upload's bytes in chunks: counts, hashes and writes them to a hidden file
    in spool_dir (the API's own disk), then hands it to storage.

    Nothing is visible under the upload's id until `commit` stores its record, which is written
    last; `discard` removes every trace.
    """

    def __init__(self, storage: Storage, spool_dir: Path, max_bytes: int) -> None:
        self.dataset_id = new_dataset_id()
        self.storage = storage
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._digest = hashlib.sha256()
        spool_dir.mkdir(parents=True, exist_ok=True)
        self._partial = spool_dir / f".{self.dataset_id}.part"
        self._handle: BinaryIO = self._partial.open("wb")

    def write(self, chunk: bytes) -> None:
        self.size_bytes += len(chunk)
        if self.size_bytes > self.max_bytes:
            raise UploadTooLarge
        self._digest.update(chunk)
        self._handle.write(chunk)

    def commit(self, owner: str, filename: str) -> UploadRecord:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        record = UploadRecord(
            dataset_id=self.dataset_id,
            owner=owner,
            filename=filename,
            size_bytes=self.size_bytes,
            sha256=self._digest.hexdigest(),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        # The record goes last: a reader never finds an upload without its file and owner.
        self.storage.put_file(upload_key(self.dataset_id, UPLOAD_FILE), self._partial, move=True)
        self.storage.put_bytes(
            upload_key(self.dataset_id, RECORD_FILE), json.dumps(asdict(record)).encode("utf-8")
        )
        self._partial.unlink(missing_ok=True)
        return record

    def discard(self) -> None:
        self._handle.close()
        self._partial.unlink(missing_ok=True)
        self.storage.delete(upload_key(self.dataset_id, UPLOAD_FILE))


def read_record(storage: Storage, dataset_id: str) -> UploadRecord:
    """The upload's record; UploadMissing if there is no complete upload with this id."""
    if not is_valid_dataset_id(dataset_id):
        raise UploadMissing(dataset_id)
    try:
        with storage.open_read(upload_key(dataset_id, RECORD_FILE)) as handle:
            data = json.loads(handle.read(64 * 1024))
        return UploadRecord(**data)
    except (OSError, ValueError, TypeError, StorageKeyMissing) as error:
        raise UploadMissing(dataset_id) from error


def open_upload(storage: Storage, dataset_id: str) -> tuple[BinaryIO, int]:
    """A stream of a complete upload's file and its size; UploadMissing otherwise."""
    read_record(storage, dataset_id)
    key = upload_key(dataset_id, UPLOAD_FILE)
    found = storage.stat(key)
    if found is None:
        raise UploadMissing(dataset_id)
    try:
        return storage.open_read(key), found.size_bytes
    except StorageKeyMissing:
        raise UploadMissing(dataset_id) from None
