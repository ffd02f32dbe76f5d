"""Which local files a run may read as its dataset: only those inside the configured roots.

Paths are judged after resolving symlinks and `..`, so neither a symlink placed inside a root
nor a traversal leaves it. The service's own storage in DATA_DIR (every run's datasets and
artifacts, the uploads, the Temporal database) is refused even when a root contains it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit


class LocalPathRefused(Exception):
    """The path is not one a run may read; the message says which setting changes that."""


def parse_roots(text: str) -> list[Path]:
    """DATASET_ROOTS (comma separated) as resolved folders."""
    return [
        Path(os.path.realpath(Path(part.strip()).expanduser()))
        for part in text.split(",")
        if part.strip()
    ]


def local_path_of(url: str) -> Path:
    """The filesystem path a plain path or `file://` URL names (not yet checked)."""
    if url.lower().startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise LocalPathRefused(
                f"file:// URLs on another host ({parts.netloc!r}) are not supported; "
                "use an http(s) URL or upload the file with POST /datasets"
            )
        return Path(unquote(parts.path))
    return Path(url).expanduser()


# What the service keeps in DATA_DIR: every run's datasets and artifacts, every principal's
# uploads, sandbox working folders, and the dev server's database (with its -wal and -shm).
SERVICE_FOLDERS = ("datasets", "artifacts", "uploads", "scratch")
DATABASE_PREFIX = "temporal.db"


def check_local_path(path: Path, roots: list[Path], data_dir: Path) -> Path:
    """The resolved path when it lies inside a root and outside the service's own storage.

    Raises LocalPathRefused otherwise. The existence of files outside the roots is never
    revealed: the check comes before anything looks at the file.
    """
    resolved = Path(os.path.realpath(path))
    if _in_service_storage(resolved, Path(os.path.realpath(data_dir))):
        raise LocalPathRefused(
            "the local path points into the service's own storage in DATA_DIR (other runs' "
            "datasets and artifacts, uploads, the database), which runs may not read, whatever "
            "DATASET_ROOTS says; upload the file with POST /datasets and start the run with its "
            "dataset_id"
        )
    if not any(resolved.is_relative_to(root) for root in roots):
        where = ", ".join(str(root) for root in roots) if roots else "none are configured"
        raise LocalPathRefused(
            "the local path is outside the folders datasets may be read from (after following "
            f"symlinks); DATASET_ROOTS: {where}. Move the file into one of them, add its folder "
            "to DATASET_ROOTS, or upload it with POST /datasets"
        )
    return resolved


def _in_service_storage(resolved: Path, storage: Path) -> bool:
    if resolved == storage:
        return True
    if not resolved.is_relative_to(storage):
        return False
    first = resolved.relative_to(storage).parts[0]
    return first in SERVICE_FOLDERS or first.startswith(DATABASE_PREFIX)


def open_checked(resolved: Path, roots: list[Path], data_dir: Path) -> BinaryIO:
    """Open a path check_local_path accepted, and check again what was actually opened.

    A folder on the way could be swapped for a symlink between the check and the open; the
    open file's own path (from /proc on Linux) is what counts.
    """
    handle = resolved.open("rb")
    opened = Path(f"/proc/self/fd/{handle.fileno()}")
    try:
        if opened.exists():
            check_local_path(Path(os.readlink(opened)), roots, data_dir)
    except LocalPathRefused:
        handle.close()
        raise
    return handle
