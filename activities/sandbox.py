"""Runs generated Python in a separate, limited, network-less process with its own folder."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activities.artifacts import iter_regular_files

if TYPE_CHECKING:
    from settings import Settings

DATASET_FILE = "dataset.csv"
_CHUNK = 64 * 1024
# How long to wait for the output pipes to drain once the process group is gone; a grandchild
# that escaped the group may still hold them open, and a run must not hang on it.
_DRAIN_SECONDS = 2.0
_POLL_SECONDS = 0.05

# Flags from <sched.h>; os.unshare only exists from Python 3.12 on, so libc is called directly.
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


class LimitExceeded(StrEnum):
    WALL_CLOCK = "wall_clock"
    MEMORY = "memory"
    CPU = "cpu"


class NetworkIsolation(StrEnum):
    """How the child was cut off from the network, as the child itself observed it."""

    # A fresh user + network namespace: only a downed loopback exists, and the child also holds
    # no capabilities in the host's namespaces (so it cannot, e.g., raise its own rlimits).
    USER_AND_NETWORK_NAMESPACE = "user+network-namespace"
    # A fresh network namespace only (root without user namespaces).
    NETWORK_NAMESPACE = "network-namespace"
    # No namespace was available (e.g. a container's seccomp profile forbids unshare): an audit
    # hook refuses socket connect/bind/send/resolve from Python. Best effort only: native code
    # calling libc directly (ctypes, a subprocess) is not covered.
    AUDIT_HOOK = "audit-hook"
    UNKNOWN = "unknown"  # the child died before reporting


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 900.0
    memory_mb: int = 2048
    cpu_seconds: int = 1800
    output_bytes: int = 1024 * 1024  # per stream
    file_bytes: int = 4 * 1024**3  # largest single file the code may write

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(
            wall_seconds=settings.execution_timeout_seconds,
            memory_mb=settings.execution_memory_mb,
            cpu_seconds=settings.execution_cpu_seconds,
            output_bytes=settings.execution_output_bytes,
        )

    def describe(self, limit: LimitExceeded) -> str:
        match limit:
            case LimitExceeded.WALL_CLOCK:
                return f"exceeded the {self.wall_seconds:g} s wall-clock limit"
            case LimitExceeded.MEMORY:
                return f"exceeded the {self.memory_mb} MB memory limit"
            case LimitExceeded.CPU:
                return f"exceeded the CPU time limit ({self.cpu_seconds} s)"


@dataclass(frozen=True)
class SandboxRun:
    """What a run did. exit_code is negative when a signal ended it (-9 = SIGKILL)."""

    exit_code: int
    duration_seconds: float
    stdout: str  # up to the output cap: the head and the tail, a marker where bytes were dropped
    stderr: str
    message: str  # one line for people: "exited with code 0", "exceeded the ... limit"
    limit_exceeded: LimitExceeded | None = None
    stdout_discarded_bytes: int = 0
    stderr_discarded_bytes: int = 0
    output_files: list[str] = field(default_factory=list)  # relative to the workdir
    network_isolation: NetworkIsolation = NetworkIsolation.UNKNOWN

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.limit_exceeded is None


# The child's entry point, passed with -c. The generated code arrives on stdin (so the workdir
# holds nothing but the dataset), runs as a real __main__ module (so pickling classes it defines
# works), and the child reports what the parent cannot observe through a private pipe.
_BOOTSTRAP = r"""
import os, sys, types, linecache
_status_fd = int(sys.argv[1])
os.set_inheritable(_status_fd, False)

def _report(line):
    try:
        os.write(_status_fd, (line + "\n").encode())
    except OSError:
        pass

def _network_isolation():
    import socket
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    if names == ["lo"]:
        with open("/proc/self/uid_map") as uid_map:
            mapped = uid_map.read().strip()
        return "user+network-namespace" if not mapped else "network-namespace"
    refused = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
               "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
               "socket.gethostbyaddr"}
    def _refuse_network(event, args):
        if event in refused:
            raise PermissionError(f"network access is disabled in the sandbox ({event})")
    sys.addaudithook(_refuse_network)
    return "audit-hook"

_report("network " + _network_isolation())
_source = sys.stdin.read()
linecache.cache["main.py"] = (len(_source), None, _source.splitlines(True), "main.py")
_main = types.ModuleType("__main__")
_main.__file__ = "main.py"
sys.modules["__main__"] = _main
sys.argv = ["main.py"]
import traceback
try:
    exec(compile(_source, "main.py", "exec"), _main.__dict__)
except SystemExit:
    raise
except BaseException as error:
    if isinstance(error, MemoryError):
        _report("limit memory")
    # Printed from Python so the lines of main.py (known only to linecache) are shown, and
    # without this bootstrap's own frame.
    traceback.print_exception(type(error), error, error.__traceback__.tb_next)
    sys.exit(1)
"""


async def run_python(
    code: str,
    dataset_path: Path,
    workdir: Path,
    limits: SandboxLimits,
    *,
    use_namespaces: bool = True,
) -> SandboxRun:
    """Run code with python -I in an empty workdir holding only dataset.csv; outputs stay there.

    The workdir is emptied first, so a retried step starts from the same state. Cancelling the
    caller kills the whole process group. use_namespaces=False forces the audit-hook fallback
    (for tests and for platforms where unshare misbehaves).
    """
    workdir = await asyncio.to_thread(_prepare_workdir, workdir, dataset_path)  # may copy a lot
    status_read, status_write = os.pipe()
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # no PYTHON* variables, no user site, no script folder on sys.path
            "-u",  # unbuffered, so output written before a kill is not lost
            "-c",
            _BOOTSTRAP,
            str(status_write),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=workdir,
            env=_child_env(workdir),
            start_new_session=True,  # its own process group, killed as a whole
            pass_fds=(status_write,),
            preexec_fn=_child_setup(limits, use_namespaces),
        )
    except BaseException:
        os.close(status_read)
        raise
    finally:
        os.close(status_write)

    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = _CappedBuffer(limits.output_bytes), _CappedBuffer(limits.output_bytes)
    pumps = asyncio.gather(_pump(process.stdout, stdout), _pump(process.stderr, stderr))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(_feed_and_wait(process, code), timeout=limits.wall_seconds)
        except TimeoutError:
            timed_out = True
        duration = time.monotonic() - started
    finally:
        # Always, also on success and on cancellation: leftovers of the group (background
        # children) must not outlive the run or keep the pipes open.
        _kill_group(process.pid)
        await _wait_for_exit(process)
        await _drain(process, pumps)
        status = _read_status(status_read)

    exit_code = process.returncode if process.returncode is not None else -signal.SIGKILL
    limit = _limit_exceeded(exit_code, timed_out, status)
    return SandboxRun(
        exit_code=exit_code,
        duration_seconds=round(duration, 3),
        stdout=stdout.text(),
        stderr=stderr.text(),
        message=limits.describe(limit) if limit else _describe_exit(exit_code),
        limit_exceeded=limit,
        stdout_discarded_bytes=stdout.discarded,
        stderr_discarded_bytes=stderr.discarded,
        output_files=[name for name in iter_regular_files(workdir) if name != DATASET_FILE],
        network_isolation=_network_isolation(status),
    )


def tail_text(text: str, max_bytes: int) -> str:
    """The end of a text, at most max_bytes of UTF-8, never cut inside a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[-max_bytes:].decode("utf-8", errors="ignore")


# --- Child setup ------------------------------------------------------------------------------


def _prepare_workdir(workdir: Path, dataset_path: Path) -> Path:
    """An empty workdir holding only the dataset; its absolute path, as the child runs inside it."""
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    # A copy rather than a hardlink: code opening dataset.csv for writing (as root, permissions
    # do not stop it) would otherwise rewrite the run's only copy of the data.
    shutil.copyfile(dataset_path, workdir / DATASET_FILE)
    return workdir


def _child_env(workdir: Path) -> dict[str, str]:
    """A fresh environment: nothing of the worker's (API keys, cloud credentials) is passed."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "DATASET_PATH": str(workdir / DATASET_FILE),
        "OUTPUT_DIR": str(workdir),
        "MPLBACKEND": "Agg",  # no display; plots go to files
        # One thread per BLAS/OpenMP pool: the host's cores are shared, and every extra thread
        # reserves address space that counts against the memory limit.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _ceiling(which: int, wanted: int) -> int:
    """A limit no higher than the worker's own hard limit, which an unprivileged process
    cannot raise (setrlimit would fail in the child and abort the spawn)."""
    _, current_hard = resource.getrlimit(which)
    return wanted if current_hard == resource.RLIM_INFINITY else min(wanted, current_hard)


def _child_setup(limits: SandboxLimits, use_namespaces: bool) -> Callable[[], None]:
    """The preexec_fn. Everything is computed here, in the parent, so the forked child only
    makes system calls (a forked child of a threaded worker must not take locks)."""
    memory = _ceiling(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
    # SIGXCPU at the soft limit ends the run; the hard limit is the SIGKILL backstop for code
    # that ignores SIGXCPU.
    cpu_hard = _ceiling(resource.RLIMIT_CPU, limits.cpu_seconds + 2)
    cpu = (min(limits.cpu_seconds, cpu_hard), cpu_hard)
    file_size = _ceiling(resource.RLIMIT_FSIZE, limits.file_bytes)
    unshare = _libc_unshare() if use_namespaces else None

    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, cpu)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if unshare is not None and unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
            # The child reports what it got; failing here would only abort the spawn.
            unshare(_CLONE_NEWNET)

    return setup


def _libc_unshare() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).unshare  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


# --- Running ----------------------------------------------------------------------------------


async def _feed_and_wait(process: asyncio.subprocess.Process, code: str) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write(code.encode("utf-8"))
        await process.stdin.drain()
        process.stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child died before reading its code; its exit status tells why
    await _wait_for_exit(process)


async def _wait_for_exit(process: asyncio.subprocess.Process) -> None:
    """Until the child itself has exited.

    Not process.wait(): before Python 3.12 that also waits for the output pipes to close, which
    a background grandchild holding them would delay until the wall-clock limit.
    """
    while process.returncode is None:  # noqa: ASYNC110 (no event to await; see above)
        await asyncio.sleep(_POLL_SECONDS)


async def _drain(process: asyncio.subprocess.Process, pumps: asyncio.Future[Any]) -> None:
    """Collect the output still in the pipes, without hanging on a process that escaped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pumps), timeout=_DRAIN_SECONDS)
    pumps.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pumps
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout=_DRAIN_SECONDS)


async def _pump(stream: asyncio.StreamReader, buffer: _CappedBuffer) -> None:
    while chunk := await stream.read(_CHUNK):
        buffer.feed(chunk)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read_status(fd: int) -> list[str]:
    """The child's status lines; non-blocking, since an escaped grandchild may hold the pipe."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, _CHUNK):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace").splitlines()


def _limit_exceeded(exit_code: int, timed_out: bool, status: list[str]) -> LimitExceeded | None:
    if timed_out:
        return LimitExceeded.WALL_CLOCK
    if exit_code == -signal.SIGXCPU:
        return LimitExceeded.CPU
    if exit_code != 0 and "limit memory" in status:
        return LimitExceeded.MEMORY
    return None


def _network_isolation(status: list[str]) -> NetworkIsolation:
    for line in status:
        if line.startswith("network "):
            with contextlib.suppress(ValueError):
                return NetworkIsolation(line.removeprefix("network "))
    return NetworkIsolation.UNKNOWN


def _describe_exit(exit_code: int) -> str:
    if exit_code >= 0:
        return f"exited with code {exit_code}"
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    if exit_code == -signal.SIGKILL:
        # Not sent by us (that would be the wall-clock limit): the CPU hard limit after an
        # ignored SIGXCPU, or the kernel's out-of-memory killer.
        return f"was killed by {name} (CPU hard limit or out of memory)"
    return f"was killed by {name}"


class _CappedBuffer:
    """Keeps the first and the last half of a stream's cap; what lies between is only counted."""

    def __init__(self, cap: int) -> None:
        self._head_cap = cap // 2
        self._tail_cap = cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        if len(self._tail) > self._tail_cap:
            del self._tail[: len(self._tail) - self._tail_cap]

    @property
    def discarded(self) -> int:
        return self.total - len(self._head) - len(self._tail)

    def text(self) -> str:
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        if self.discarded:
            return f"{head}\n[... {self.discarded} bytes of output discarded ...]\n{tail}"
        return head + tail
