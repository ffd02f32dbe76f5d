"""Uploaded datasets: one folder per upload under DATA_DIR/uploads, with a record of its owner.

The API writes them (POST /datasets) and the worker reads them when a run's dataset is an
`upload://ds-…` reference; both must see the same DATA_DIR.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

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


class UploadWriter:
    """Receives an upload's bytes in chunks: counts, hashes and writes them to a hidden file.

    Nothing is visible under the upload's id until `commit`; `discard` removes every trace.
    """

    def __init__(self, uploads_dir: Path, max_bytes: int) -> None:
        self.dataset_id = new_dataset_id()
        self.folder = uploads_dir / self.dataset_id
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._digest = hashlib.sha256()
        uploads_dir.mkdir(parents=True, exist_ok=True)
        self._partial = uploads_dir / f".{self.dataset_id}.part"
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
        staging = self.folder.with_name(f".{self.dataset_id}.staging")
        staging.mkdir()
        os.replace(self._partial, staging / UPLOAD_FILE)
        (staging / RECORD_FILE).write_text(json.dumps(asdict(record)))
        # The folder appears whole or not at all: a reader never sees a file without its owner.
        os.replace(staging, self.folder)
        return record

    def discard(self) -> None:
        self._handle.close()
        self._partial.unlink(missing_ok=True)
        shutil.rmtree(self.folder.with_name(f".{self.dataset_id}.staging"), ignore_errors=True)


def read_record(uploads_dir: Path, dataset_id: str) -> UploadRecord:
    """The upload's record; UploadMissing if there is no complete upload with this id."""
    if not is_valid_dataset_id(dataset_id):
        raise UploadMissing(dataset_id)
    try:
        data = json.loads((uploads_dir / dataset_id / RECORD_FILE).read_text())
        return UploadRecord(**data)
    except (OSError, ValueError, TypeError) as error:
        raise UploadMissing(dataset_id) from error


def uploaded_file(uploads_dir: Path, dataset_id: str) -> Path:
    """The stored file of a complete upload; UploadMissing otherwise."""
    read_record(uploads_dir, dataset_id)
    path = uploads_dir / dataset_id / UPLOAD_FILE
    if not path.is_file():
        raise UploadMissing(dataset_id)
    return path
