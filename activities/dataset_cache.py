"""DATA_DIR/cache/<sha256>/<file>: stored datasets a worker downloaded, verified and bounded.

With object storage, a worker that runs a step of a run whose intake happened elsewhere
downloads the dataset once and keeps it under the checksum intake computed; a download that
does not match it is discarded, so the sandbox only ever reads the bytes intake checked.

The cache holds at most DATASET_CACHE_MAX_BYTES. After each download the least recently used
datasets are removed until it fits again, except those a step is using: a step holds a shared
lock (flock, so worker processes sharing a DATA_DIR respect each other) on
cache/.locks/<sha256> for as long as it runs, and eviction only takes what it can lock
exclusively without waiting. The lock files live outside the dataset folders, so removing a
folder never races with a step that is about to open it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import threading
import uuid
from pathlib import Path, PurePosixPath
from types import TracebackType

from activities.storage import TEMP_PREFIX, Storage, sha256_of

logger = logging.getLogger("orchestrator.dataset_cache")

CACHE_FOLDER = "cache"
_LOCKS = ".locks"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DatasetChecksumMismatch(RuntimeError):
    """A dataset read back from storage is not the file intake stored."""


class DatasetLease:
    """A dataset file that stays in the cache until `release()` (or the end of `with`)."""

    def __init__(self, path: Path, lock_fd: int | None) -> None:
        self.path = path
        self._lock_fd = lock_fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def __enter__(self) -> Path:
        return self.path

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class DatasetCache:
    def __init__(self, storage: Storage, folder: Path, max_bytes: int) -> None:
        self.storage = storage
        self.folder = folder
        self.max_bytes = max_bytes
        self._downloads: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lease(self, key: str, sha256: str) -> DatasetLease:
        """The stored dataset `key` as a local file, downloaded and verified if not cached."""
        direct = self.storage.local_path(key)
        if direct is not None:
            return DatasetLease(direct, None)  # a shared folder: the stored file is already local
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"invalid sha256 {sha256!r} for {key!r}")
        lock_fd = self._lock(sha256, fcntl.LOCK_SH)
        try:
            target = self.folder / sha256 / PurePosixPath(key).name
            downloaded = self._fetch(key, sha256, target)
        except BaseException:
            os.close(lock_fd)
            raise
        os.utime(target.parent)  # most recently used
        if downloaded:
            self._evict(keep=sha256)
        return DatasetLease(target, lock_fd)

    def _fetch(self, key: str, sha256: str, target: Path) -> bool:
        """Download and verify `key` into `target` unless it is there; whether it downloaded."""
        with self._download_lock(sha256):  # two steps on this worker download once
            if target.is_file():
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
            try:
                self.storage.get_to_path(key, temp)
                actual = sha256_of(temp)
                if actual != sha256:
                    raise DatasetChecksumMismatch(
                        f"{key} in {self.storage.description} has sha256 {actual}, not the "
                        f"{sha256} recorded at intake; the stored file changed or is damaged"
                    )
                os.replace(temp, target)
            except BaseException:
                temp.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    target.parent.rmdir()  # nothing kept for a download that failed
                raise
            return True

    def _evict(self, keep: str) -> None:
        """Remove least recently used datasets not in use until the cache fits its limit."""
        entries = []
        for entry in self.folder.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
            entries.append((entry.stat().st_mtime, entry.name, size))
        total = sum(size for _, _, size in entries)
        for _, name, size in sorted(entries):
            if total <= self.max_bytes:
                return
            if name == keep:
                continue
            try:
                lock_fd = self._lock(name, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a step is reading it
            try:
                shutil.rmtree(self.folder / name, ignore_errors=True)
            finally:
                os.close(lock_fd)
            total -= size
            logger.info("Evicted a cached dataset", extra={"sha256": name, "size": size})
        if total > self.max_bytes:
            logger.warning(
                "The dataset cache is over DATASET_CACHE_MAX_BYTES: what it holds is in use",
                extra={"bytes": total, "limit": self.max_bytes},
            )

    def _lock(self, sha256: str, operation: int) -> int:
        folder = self.folder / _LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / sha256, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, operation)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _download_lock(self, sha256: str) -> threading.Lock:
        with self._guard:
            return self._downloads.setdefault(sha256, threading.Lock())
