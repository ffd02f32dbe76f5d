"""Runs generated Python isolated from the worker: under bubblewrap, or unisolated on purpose.

Bubblewrap (activities/bubblewrap.py) is the default and the only mode that isolates: the code
sees its dataset, a capped private work folder and the Python runtime, nothing else of the host.
Where it cannot run, running code is refused (SandboxUnavailable) unless the operator set
SANDBOX=unisolated, which runs a limited, secret-free subprocess in a host folder. Either way
the mode is recorded in every result.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from activities import bubblewrap, pids_cgroup, sandbox_child
from activities.artifacts import iter_regular_files
from activities.bubblewrap import SandboxUnavailable
from activities.pids_cgroup import PidsCgroup
from activities.sandbox_outputs import receive_outputs

if TYPE_CHECKING:
    from settings import Settings

__all__ = [
    "Isolation",
    "LimitExceeded",
    "NetworkIsolation",
    "SandboxLimits",
    "SandboxRun",
    "SandboxUnavailable",
    "run_python",
    "tail_text",
]

DATASET_FILE = "dataset.csv"
_CHUNK = 64 * 1024
# How long to wait for the output pipes to drain once the process is gone; a grandchild that
# escaped (possible only unisolated) may still hold them open, and a run must not hang on it.
_DRAIN_SECONDS = 2.0
_POLL_SECONDS = 0.05
# The tar stream of outputs may exceed the work folder's cap by its headers only.
_TAR_OVERHEAD = 1.1

# Flags from <sched.h>; os.unshare only exists from Python 3.12 on, so libc is called directly.
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


class Isolation(StrEnum):
    """The SANDBOX setting, and what each result records as its isolation."""

    BUBBLEWRAP = "bubblewrap"
    UNISOLATED = "unisolated"


class LimitExceeded(StrEnum):
    WALL_CLOCK = "wall_clock"
    MEMORY = "memory"
    CPU = "cpu"


class NetworkIsolation(StrEnum):
    """How the child was cut off from the network."""

    # Bubblewrap's network namespace: only a loopback of its own, nothing of the host's.
    BUBBLEWRAP = "bubblewrap"
    # Unisolated, best effort: a fresh user + network namespace where the kernel allows one...
    USER_AND_NETWORK_NAMESPACE = "user+network-namespace"
    NETWORK_NAMESPACE = "network-namespace"  # (root without user namespaces)
    # ...else an audit hook refusing socket calls from Python; native code is not covered.
    AUDIT_HOOK = "audit-hook"
    UNKNOWN = "unknown"  # the child died before reporting


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 900.0
    memory_mb: int = 2048
    cpu_seconds: int = 1800
    output_bytes: int = 1024 * 1024  # per stream
    file_bytes: int = 4 * 1024**3  # largest single file the code may write
    max_processes: int = 256  # processes and threads at once
    disk_bytes: int = 1024**3  # each of the work folder, /tmp and /dev/shm (bubblewrap)
    max_concurrent: int = 4  # sandboxed processes of this worker process at once

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(
            wall_seconds=settings.execution_timeout_seconds,
            memory_mb=settings.execution_memory_mb,
            cpu_seconds=settings.execution_cpu_seconds,
            output_bytes=settings.execution_output_bytes,
            max_processes=settings.execution_max_processes,
            disk_bytes=settings.execution_disk_mb * 1024 * 1024,
            max_concurrent=settings.execution_max_concurrent,
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
    isolation: Isolation
    limit_exceeded: LimitExceeded | None = None
    stdout_discarded_bytes: int = 0
    stderr_discarded_bytes: int = 0
    output_files: list[str] = field(default_factory=list)  # relative to the workdir
    network_isolation: NetworkIsolation = NetworkIsolation.UNKNOWN

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.limit_exceeded is None


async def run_python(
    code: str,
    dataset_path: Path,
    workdir: Path,
    limits: SandboxLimits,
    *,
    isolation: Isolation = Isolation.BUBBLEWRAP,
    use_namespaces: bool = True,
) -> SandboxRun:
    """Run code on the dataset; its output files end up in workdir (emptied first).

    The code sees the dataset at $DATASET_PATH and writes to $OUTPUT_DIR, its working folder.
    A retried step starts from the same state; cancelling the caller kills every process of the
    run. Raises SandboxUnavailable when bubblewrap cannot run here. use_namespaces=False forces
    the unisolated mode's audit-hook fallback (for tests).

    At most `limits.max_concurrent` runs of this process are under way at once; a run waits for
    its turn before its limits start counting.
    """
    async with _turns(limits.max_concurrent):
        if isolation is Isolation.BUBBLEWRAP:
            return await _run_in_bubblewrap(code, dataset_path, workdir, limits)
        return await _run_unisolated(code, dataset_path, workdir, limits, use_namespaces)


# The worker's activity slots are many (cheap agent calls, and eager dispatch needs free ones);
# what bounds its memory and cores is this, the number of sandboxed processes at once. One set
# of turns per event loop, since asyncio primitives belong to one loop.
_TURNS: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    WeakKeyDictionary()
)


def _turns(limit: int) -> asyncio.Semaphore:
    per_limit = _TURNS.setdefault(asyncio.get_running_loop(), {})
    return per_limit.setdefault(limit, asyncio.Semaphore(limit))


def tail_text(text: str, max_bytes: int) -> str:
    """The end of a text, at most max_bytes of UTF-8, never cut inside a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[-max_bytes:].decode("utf-8", errors="ignore")


# --- Bubblewrap -------------------------------------------------------------------------------


async def _run_in_bubblewrap(
    code: str, dataset_path: Path, workdir: Path, limits: SandboxLimits
) -> SandboxRun:
    bwrap = bubblewrap.find_bwrap()
    workdir = await asyncio.to_thread(_empty_folder, workdir)
    cgroup = await asyncio.to_thread(_pids_cgroup_if_needed, limits)
    status_read, status_write = os.pipe()
    outbox_read, outbox_write = os.pipe()
    passwd = _data_pipe(bubblewrap.passwd_entry())
    group = _data_pipe(bubblewrap.group_entry())
    fds = bubblewrap.SandboxFds(status_write, outbox_write, passwd, group)
    child_fds = [status_write, outbox_write, passwd, group]
    procs_fd = cgroup.open_procs() if cgroup is not None else None
    receiving: asyncio.Future[Any] | None = None
    try:
        argv = bubblewrap.command(
            bwrap,
            dataset=dataset_path,
            child_script=Path(sandbox_child.__file__),
            disk_bytes=limits.disk_bytes,
            max_processes=limits.max_processes,
            fds=fds,
        )
        try:
            process = await _spawn(
                argv,
                env=bubblewrap.environment(),
                cwd=None,
                pass_fds=child_fds,
                preexec_fn=_child_setup(
                    limits, unshare=None, cgroup_procs_fd=procs_fd, limit_processes=False
                ),
            )
        except (OSError, subprocess.SubprocessError) as error:
            raise SandboxUnavailable(
                f"bwrap could not be started ({error}). {bubblewrap.HOW_TO_GET_IT}"
            ) from None
        for fd in child_fds:  # the sandbox holds them now; the outbox ends when it does
            os.close(fd)
        child_fds = []
        cap = int(limits.disk_bytes * _TAR_OVERHEAD) + 1024 * 1024
        receiving = asyncio.ensure_future(
            asyncio.to_thread(receive_outputs, outbox_read, workdir, cap)
        )
        outbox_read = -1  # receive_outputs closes it
        finished = await _supervise(process, code, limits)
    finally:
        leftovers = [*child_fds, outbox_read, -1 if procs_fd is None else procs_fd]
        for fd in leftovers:
            if fd >= 0:
                os.close(fd)
        # The sandbox is gone (killed with its pid namespace), so the outbox is at its end.
        received = await receiving if receiving is not None else None
        status = _read_status(status_read)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)

    if "started" not in status and not finished.timed_out:
        detail = finished.stderr.text().strip().splitlines()
        reason = detail[-1] if detail else f"bwrap exited with code {finished.returncode}"
        raise SandboxUnavailable(
            f"bubblewrap could not start the sandbox ({reason}). {bubblewrap.HOW_TO_GET_IT}"
        )
    exit_code = _reported_exit(status, finished.returncode)
    stderr = finished.stderr.text()
    if received is not None and received.notes:
        stderr += "".join(f"[sandbox] {note}\n" for note in received.notes)
    return _result(
        finished,
        exit_code,
        status,
        limits,
        stderr=stderr,
        isolation=Isolation.BUBBLEWRAP,
        output_files=list(iter_regular_files(workdir)),
        network=NetworkIsolation.BUBBLEWRAP,
    )


def _pids_cgroup_if_needed(limits: SandboxLimits) -> PidsCgroup | None:
    if not pids_cgroup.needed():
        return None
    cgroup = PidsCgroup.create(limits.max_processes)
    if cgroup is None:
        raise SandboxUnavailable(
            "the worker runs as root, where the kernel does not apply the process limit "
            "(RLIMIT_NPROC) inside the sandbox, and it cannot create a pids cgroup to limit it "
            "instead. Run the worker as a non-root user (the Docker image does), or give it a "
            "writable pids cgroup (cgroup v1, or v2 with the pids controller delegated)."
        )
    return cgroup


def _data_pipe(data: bytes) -> int:
    """A pipe's read end holding data (a few bytes: it fits the pipe's buffer)."""
    read, write = os.pipe()
    try:
        os.write(write, data)
    finally:
        os.close(write)
    return read


def _reported_exit(status: list[str], fallback: int) -> int:
    """The code's exit status as the supervisor saw it; bwrap's own when it never said."""
    for line in reversed(status):
        if line.startswith("exit "):
            with contextlib.suppress(ValueError):
                return int(line.removeprefix("exit "))
    return fallback


# --- Unisolated -------------------------------------------------------------------------------


async def _run_unisolated(
    code: str, dataset_path: Path, workdir: Path, limits: SandboxLimits, use_namespaces: bool
) -> SandboxRun:
    workdir = await asyncio.to_thread(_empty_folder, workdir)
    # A copy rather than a hardlink: code opening dataset.csv for writing would otherwise
    # rewrite the run's only copy of the data.
    await asyncio.to_thread(shutil.copyfile, dataset_path, workdir / DATASET_FILE)
    status_read, status_write = os.pipe()
    try:
        process = await _spawn(
            [sys.executable, "-I", "-u", sandbox_child.__file__, "run", str(status_write),
             "--check-network"],
            env=_unisolated_env(workdir),
            cwd=workdir,
            pass_fds=[status_write],
            preexec_fn=_child_setup(
                limits,
                unshare=_libc_unshare() if use_namespaces else None,
                cgroup_procs_fd=None,
                limit_processes=True,
            ),
        )  # fmt: skip
    except BaseException:
        os.close(status_read)
        raise
    finally:
        os.close(status_write)
    try:
        finished = await _supervise(process, code, limits)
    finally:
        status = _read_status(status_read)
    return _result(
        finished,
        finished.returncode,
        status,
        limits,
        stderr=finished.stderr.text(),
        isolation=Isolation.UNISOLATED,
        output_files=[n for n in iter_regular_files(workdir) if n != DATASET_FILE],
        network=_network_isolation(status),
    )


def _unisolated_env(workdir: Path) -> dict[str, str]:
    """A fresh environment: nothing of the worker's (API keys, cloud credentials) is passed."""
    return {
        **bubblewrap.environment(),
        "HOME": str(workdir),
        "DATASET_PATH": str(workdir / DATASET_FILE),
        "OUTPUT_DIR": str(workdir),
        "MPLCONFIGDIR": str(workdir / ".mpl"),
        "XDG_CACHE_HOME": str(workdir / ".cache"),
    }


def _libc_unshare() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).unshare  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def _network_isolation(status: list[str]) -> NetworkIsolation:
    for line in status:
        if line.startswith("network "):
            with contextlib.suppress(ValueError):
                return NetworkIsolation(line.removeprefix("network "))
    return NetworkIsolation.UNKNOWN


# --- Both: the child process, its limits and its output ---------------------------------------


def _empty_folder(folder: Path) -> Path:
    """folder, emptied (a retried step starts from the same state); its absolute path."""
    folder = folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _ceiling(which: int, wanted: int) -> int:
    """A limit no higher than the worker's own hard limit, which an unprivileged process
    cannot raise (setrlimit would fail in the child and abort the spawn)."""
    _, current_hard = resource.getrlimit(which)
    return wanted if current_hard == resource.RLIM_INFINITY else min(wanted, current_hard)


def _child_setup(
    limits: SandboxLimits,
    *,
    unshare: Callable[[int], int] | None,
    cgroup_procs_fd: int | None,
    limit_processes: bool,
) -> Callable[[], None]:
    """The preexec_fn. Everything is computed here, in the parent, so the forked child only
    makes system calls (a forked child of a threaded worker must not take locks)."""
    memory = _ceiling(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
    # SIGXCPU at the soft limit ends the run; the hard limit is the SIGKILL backstop for code
    # that ignores SIGXCPU.
    cpu_hard = _ceiling(resource.RLIMIT_CPU, limits.cpu_seconds + 2)
    cpu = (min(limits.cpu_seconds, cpu_hard), cpu_hard)
    file_size = _ceiling(resource.RLIMIT_FSIZE, limits.file_bytes)
    # Counted per user, for all of the worker's user's processes; under bubblewrap the
    # supervisor sets it inside the sandbox instead (sandbox_child.py says why). The kernel
    # ignores it for host root, which is why a root worker adds a pids cgroup.
    processes = _ceiling(resource.RLIMIT_NPROC, limits.max_processes) if limit_processes else None

    def setup() -> None:
        if cgroup_procs_fd is not None:
            os.write(cgroup_procs_fd, b"0")  # "0" moves the writer itself
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, cpu)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        if processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if unshare is not None and unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
            # The child reports what it got; failing here would only abort the spawn.
            unshare(_CLONE_NEWNET)

    return setup


async def _spawn(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path | None,
    pass_fds: list[int],
    preexec_fn: Callable[[], None],
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,  # its own process group, killed as a whole
        pass_fds=pass_fds,
        preexec_fn=preexec_fn,
    )


@dataclass
class _Finished:
    returncode: int
    timed_out: bool
    duration: float
    stdout: _CappedBuffer
    stderr: _CappedBuffer


async def _supervise(
    process: asyncio.subprocess.Process, code: str, limits: SandboxLimits
) -> _Finished:
    """Feed the code, collect the output, enforce the wall clock; kill everything at the end."""
    assert process.stdout is not None and process.stderr is not None
    started = time.monotonic()
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
        # Always, also on success and on cancellation: leftovers of the group must not outlive
        # the run. Under bubblewrap, killing bwrap takes its pid namespace, and all in it, along.
        _kill_group(process.pid)
        await _wait_for_exit(process)
        await _drain(process, pumps)
    returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
    return _Finished(returncode, timed_out, round(duration, 3), stdout, stderr)


def _result(
    finished: _Finished,
    exit_code: int,
    status: list[str],
    limits: SandboxLimits,
    *,
    stderr: str,
    isolation: Isolation,
    output_files: list[str],
    network: NetworkIsolation,
) -> SandboxRun:
    limit = _limit_exceeded(exit_code, finished.timed_out, status)
    return SandboxRun(
        exit_code=exit_code,
        duration_seconds=finished.duration,
        stdout=finished.stdout.text(),
        stderr=stderr,
        message=limits.describe(limit) if limit else _describe_exit(exit_code),
        isolation=isolation,
        limit_exceeded=limit,
        stdout_discarded_bytes=finished.stdout.discarded,
        stderr_discarded_bytes=finished.stderr.discarded,
        output_files=output_files,
        network_isolation=network,
    )


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
