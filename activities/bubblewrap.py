"""The bubblewrap (`bwrap`) command line that isolates generated code, built from its limits.

Inside: new user, pid, network, mount, ipc and uts namespaces; uid and gid 65534 without
capabilities; the system libraries and this worker's Python (the venv and the interpreter it
links to) read-only; the dataset read-only; a size-capped private tmpfs as the work folder, and
others as /tmp and /dev/shm; its own /proc; an empty, read-only root. Nothing else of the host
is there: not /etc (only the few files named below), not DATA_DIR, not other runs.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

SANDBOX_UID = 65534  # "nobody" inside the sandbox
WORK_DIR = Path("/workspace")  # the code's private folder, cwd and HOME; outputs go here
DATASET_PATH = WORK_DIR / "dataset.csv"
CHILD_SCRIPT = Path("/run/sandbox/child.py")  # activities/sandbox_child.py, read-only

# The host's top-level system folders, bound read-only (or recreated as the symlinks they are on
# merged-/usr systems). /etc is not among them: it holds secrets (/etc/shadow, /etc/ssl/private).
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The few /etc entries programs need: the dynamic linker's cache, the time zone, public CA
# certificates, Debian's alternatives symlinks and fontconfig's setup (matplotlib runs fc-list).
_ETC_ENTRIES = ("ld.so.cache", "localtime", "ssl/certs", "alternatives", "fonts")

HOW_TO_GET_IT = (
    "Install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; `make dev` does it) and "
    "allow the worker to create user namespaces (in Docker or Kubernetes this needs a seccomp "
    "profile that permits it, see the README's 'Sandbox' section). To run generated code "
    "without isolation on purpose, set SANDBOX=unisolated."
)


class SandboxUnavailable(RuntimeError):
    """This worker cannot isolate generated code; the message says what to do about it."""


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed. {HOW_TO_GET_IT}")
    return path


@dataclass(frozen=True)
class SandboxFds:
    """File descriptors of the worker that bwrap passes into the sandbox."""

    status: int  # the child reports "started", "exit N", "limit memory" here
    outbox: int  # the supervisor streams the work folder's files out here as a tar archive
    passwd: int  # read by bwrap into /etc/passwd (so getpass, pwd and friends work)
    group: int


def passwd_entry() -> bytes:
    return f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:generated code:{WORK_DIR}:/bin/false\n".encode()


def group_entry() -> bytes:
    return f"sandbox:x:{SANDBOX_UID}:\n".encode()


def python_runtime() -> list[Path]:
    """The folders this worker's Python needs: its prefix (a venv) and the base interpreter's."""
    paths: list[Path] = []
    for prefix in (sys.prefix, sys.base_prefix, Path(sys.executable).resolve().parent.parent):
        path = Path(prefix).resolve()
        if path == Path("/usr") or Path("/usr") in path.parents:
            continue  # bound with /usr already
        if not any(path == p or p in path.parents for p in paths):
            paths = [p for p in paths if path not in p.parents] + [path]
    for path in paths:
        if path == WORK_DIR or WORK_DIR in path.parents:
            raise SandboxUnavailable(
                f"the worker's Python lives under {WORK_DIR}, where the sandbox mounts the "
                f"code's work folder; install it elsewhere. {HOW_TO_GET_IT}"
            )
    return paths


def environment() -> dict[str, str]:
    """The sandbox's whole environment (and bwrap's own): nothing of the worker's is passed."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(WORK_DIR),
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "DATASET_PATH": str(DATASET_PATH),
        "OUTPUT_DIR": str(WORK_DIR),
        "MPLBACKEND": "Agg",  # no display; plots go to files
        "MPLCONFIGDIR": "/tmp/mpl",  # matplotlib's cache must be writable
        "XDG_CACHE_HOME": "/tmp/cache",
        # One thread per BLAS/OpenMP pool: the host's cores are shared, and every extra thread
        # reserves address space that counts against the memory limit.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def command(
    bwrap: str,
    *,
    dataset: Path,
    child_script: Path,
    disk_bytes: int,
    max_processes: int,
    fds: SandboxFds,
) -> list[str]:
    """bwrap's argv that runs the supervisor (sandbox_child.py) over the code on stdin.

    disk_bytes caps each tmpfs (the work folder, /tmp, /dev/shm); the supervisor applies
    max_processes inside. The other rlimits are set on bwrap by the caller and inherited.
    """
    argv = [
        bwrap,
        "--unshare-all",  # pid, net, ipc, uts, cgroup (and user, made a hard requirement next)
        "--unshare-user",
        "--disable-userns",  # no nested user namespaces: fewer kernel paths for the code to try
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--cap-drop", "ALL",
        "--die-with-parent",  # SIGKILL for everything inside when the worker dies, even by -9
        "--new-session",  # no controlling terminal to inject keystrokes into
        "--hostname", "sandbox",
    ]  # fmt: skip
    argv += _system_binds()
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(disk_bytes), "--tmpfs", "/dev/shm",
        "--size", str(disk_bytes), "--tmpfs", "/tmp",
        "--size", str(disk_bytes), "--tmpfs", str(WORK_DIR),
    ]  # fmt: skip
    # After the private /tmp: a checkout (and its venv) may itself live under /tmp, and a later
    # mount lies over an earlier one.
    for path in python_runtime():
        argv += ["--ro-bind", str(path), str(path)]
    argv += [
        "--ro-bind", str(dataset.resolve()), str(DATASET_PATH),
        "--ro-bind", str(child_script.resolve()), str(CHILD_SCRIPT),
        "--ro-bind-data", str(fds.passwd), "/etc/passwd",
        "--ro-bind-data", str(fds.group), "/etc/group",
        # The root (a tmpfs bwrap made) and /dev would otherwise be writable without a cap.
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--chdir", str(WORK_DIR),
        sys.executable, "-I", "-u", str(CHILD_SCRIPT),
        "supervise", str(fds.status), str(fds.outbox), str(WORK_DIR), str(max_processes),
    ]  # fmt: skip
    return argv


def _system_binds() -> list[str]:
    argv: list[str] = []
    for name in _SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", str(host.readlink()), str(host)]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), str(host)]
    for entry in _ETC_ENTRIES:
        host = Path("/etc") / entry
        if host.exists():
            argv += ["--ro-bind", str(host), str(host)]
    return argv
