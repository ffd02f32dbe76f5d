"""Each worker's scratch folder, held by a lock for the worker's lifetime, and the sweep that
removes the folders of workers that are provably gone.

A worker's folder is `<root>/<identity>/`, beside `<root>/<identity>.lock`, on which the worker
holds an exclusive flock until it exits. The kernel drops the lock when the process dies, even
by SIGKILL, so a lock another worker can take belongs to a worker that is gone, and its folder
is debris, whatever its age. Workers sharing a data folder over NFS rely on its flock support.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import BinaryIO

_LOCK_SUFFIX = ".lock"
_STAGING_PREFIX = "."  # a lock file before it is held is hidden under a temporary name
_STAGING_MAX_AGE_SECONDS = 60.0


class WorkerScratch:
    """This worker's own scratch folder; the lock on it lives as long as this object."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.identity = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        # Locked under a hidden name, then renamed: a sweeping worker never sees it unheld.
        staging = root / f"{_STAGING_PREFIX}{self.identity}{_LOCK_SUFFIX}"
        self._lock: BinaryIO | None = open(staging, "ab")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.lock_path = root / f"{self.identity}{_LOCK_SUFFIX}"
        staging.rename(self.lock_path)
        self.folder = root / self.identity
        self.folder.mkdir()

    def close(self) -> None:
        """Remove the folder and give up the lock (a worker's orderly exit)."""
        if self._lock is None:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.lock_path.unlink()
        self._lock.close()
        self._lock = None


def sweep(root: Path, legacy_max_age_seconds: float) -> list[str]:
    """Remove the folders (and locks) of workers that are gone; returns the folders' names.

    Folders without a lock file come from workers older than this scheme; they are removed only
    once older than legacy_max_age_seconds, since their owner cannot be asked.
    """
    if not root.is_dir():
        return []
    removed: list[str] = []
    now = time.time()
    for entry in sorted(root.iterdir()):
        name = entry.name
        if entry.is_symlink():
            continue
        if name.startswith(_STAGING_PREFIX):
            # A worker killed between creating its lock and renaming it.
            if (
                name.endswith(_LOCK_SUFFIX)
                and now - entry.stat().st_mtime > _STAGING_MAX_AGE_SECONDS
            ):
                _remove_if_unheld(entry, None)
            continue
        if name.endswith(_LOCK_SUFFIX):
            folder = root / name.removesuffix(_LOCK_SUFFIX)
            if not folder.exists():
                _remove_if_unheld(entry, None)  # its folder went with an orderly exit, or never was
            continue
        if not entry.is_dir():
            continue
        lock = root / f"{name}{_LOCK_SUFFIX}"
        if lock.exists():
            if _remove_if_unheld(lock, entry):
                removed.append(name)
        elif now - entry.stat().st_mtime > legacy_max_age_seconds:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(name)
    return removed


def _remove_if_unheld(lock: Path, folder: Path | None) -> bool:
    """Take the lock without waiting; if nobody holds it, remove the folder and the lock."""
    try:
        handle = open(lock, "rb")
    except FileNotFoundError:
        return False  # another worker swept it a moment ago
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its worker is alive
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
    return True
