"""Finding on the host the processes a sandboxed script started, by a marker in their argv."""

from __future__ import annotations

import uuid
from pathlib import Path


def new_marker(base: int) -> str:
    """A sleep duration no other process on the machine uses, to find the code's processes."""
    return f"{base + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"


def live_processes_with(marker: str) -> list[int]:
    """Host pids of live (not zombie) processes with the marker as an argument."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found
