"""A pids cgroup per sandbox, for the one case where RLIMIT_NPROC does not count: a root worker.

bwrap maps the sandbox's uid to the worker's own. When the worker runs as root, that is host
uid 0, which the kernel exempts from RLIMIT_NPROC, so a fork storm would go unchecked. A child
cgroup of the worker's pids cgroup with `pids.max` bounds it instead. A non-root worker (the
Docker image runs as one) needs none of this.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "orchestrator-sandbox-"


def needed() -> bool:
    return os.geteuid() == 0


def _pids_parent() -> Path | None:
    """The worker's own cgroup in the pids hierarchy (v1 or v2), if it can hold children."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):  # cgroup v1: the pids hierarchy is its own mount
            return _CGROUP_ROOT / "pids" / path.lstrip("/")
    for line in lines:
        if line.startswith("0::"):  # cgroup v2: usable when pids is delegated to children
            parent = _CGROUP_ROOT / line.removeprefix("0::").lstrip("/")
            with contextlib.suppress(OSError):
                if "pids" in (parent / "cgroup.subtree_control").read_text().split():
                    return parent
    return None


class PidsCgroup:
    """A fresh cgroup with pids.max; the sandbox joins it before exec, and it is removed after."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup | None:
        parent = _pids_parent()
        if parent is None:
            return None
        _remove_orphans(parent)
        path = parent / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def open_procs(self) -> int:
        """An fd that the forked child writes "0" to, which moves itself into the cgroup."""
        return os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def remove(self) -> None:
        """Kill whatever is left inside (nothing, normally) and remove the cgroup."""
        for _ in range(50):
            for pid in _members(self.path):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # killed processes are still being reaped


def _members(path: Path) -> list[int]:
    try:
        return [int(pid) for pid in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _remove_orphans(parent: Path) -> None:
    """Cgroups left by workers that were killed before removing theirs (empty by then)."""
    with contextlib.suppress(OSError):
        for child in parent.glob(f"{_PREFIX}*"):
            owner = child.name.removeprefix(_PREFIX).split("-", 1)[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists() and not _members(child):
                with contextlib.suppress(OSError):
                    child.rmdir()
