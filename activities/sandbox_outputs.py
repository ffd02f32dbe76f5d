"""Receives the files a sandboxed run wrote (a tar stream) into a host folder, within bounds.

The stream comes from inside the sandbox, so it is untrusted: only regular files are written,
only under the target folder, never over an existing entry, and reading stops at a byte and a
file-count cap (closing the pipe, which ends the sender).
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MAX_FILES = 10_000
_CHUNK = 1024 * 1024


@dataclass
class ReceivedOutputs:
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was refused, for the run's stderr


class _CappedReader:
    """A read-only stream over a pipe that fails once more than `cap` bytes came through."""

    def __init__(self, fd: int, cap: int) -> None:
        self._file: BinaryIO = os.fdopen(fd, "rb", buffering=0)
        self._cap = cap
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(_CHUNK if size < 0 else size) or b""
        self.total += len(data)
        if self.total > self._cap:
            raise OverflowError(f"the outputs exceed {self._cap} bytes")
        return data

    def close(self) -> None:
        self._file.close()


def receive_outputs(fd: int, target: Path, max_bytes: int) -> ReceivedOutputs:
    """Extract the tar stream on fd into target (an empty folder); closes fd."""
    received = ReceivedOutputs()
    reader = _CappedReader(fd, max_bytes)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                if len(received.files) >= MAX_FILES:
                    received.notes.append(f"outputs beyond {MAX_FILES} files were dropped")
                    break
                relative = _safe_name(member)
                if relative is None:
                    received.notes.append(f"ignored output {member.name!r}: not a plain file")
                    continue
                source = archive.extractfile(member)
                if source is None or not _write_new(target, relative, source):
                    received.notes.append(f"ignored output {member.name!r}: cannot be stored")
                    continue
                received.files.append(relative.as_posix())
    except OverflowError as error:
        received.notes.append(f"outputs were cut short: {error}")
    except tarfile.TarError as error:
        if reader.total:  # nothing at all: the code never finished (a limit, a kill)
            received.notes.append(f"outputs were cut short: {error}")
    finally:
        reader.close()
    return received


def _safe_name(member: tarfile.TarInfo) -> PurePosixPath | None:
    if not member.isreg():
        return None
    name = PurePosixPath(member.name)
    if name.is_absolute() or not name.parts or any(p in {"..", "."} for p in name.parts):
        return None
    return name


def _write_new(target: Path, relative: PurePosixPath, source: BinaryIO) -> bool:
    """Write a new regular file; the folders on its way are made here, so none is a link."""
    folder = target
    try:
        for part in relative.parts[:-1]:
            folder = folder / part
            if not folder.is_dir() or folder.is_symlink():
                folder.mkdir()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(folder / relative.name, flags, 0o644), "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
    except OSError:
        return False
    return True
