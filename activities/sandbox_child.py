"""The program that runs inside the sandbox: it runs the generated code and hands its files out.

Standard library only, since it runs on the sandbox's read-only Python with nothing of the
service importable. Two modes:

- `run STATUS_FD [--check-network]`: read the generated code from stdin and run it as a real
  `__main__` module (so pickling the classes it defines works), reporting through STATUS_FD
  what the parent cannot observe (a MemoryError; with --check-network, how the network is cut
  off, installing an audit hook when no namespace does it).
- `supervise STATUS_FD OUTBOX_FD WORK_DIR MAX_PROCESSES`: lower RLIMIT_NPROC, start `run` as a
  child, wait for it, report its exit status, then stream the regular files under WORK_DIR to
  OUTBOX_FD as a tar archive. The work folder is a size-capped tmpfs that vanishes with the
  sandbox, so this is how outputs leave.

Nothing here is trusted by the parent: the generated code runs as the same user and could
tamper with this process. The parent caps and checks everything it reads back.
"""

from __future__ import annotations

import linecache
import os
import resource
import stat
import subprocess
import sys
import tarfile
import traceback
import types
from pathlib import Path

DATASET_FILE = "dataset.csv"
_REFUSED_NETWORK_EVENTS = {
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.gethostbyaddr",
}


def report(status_fd: int, line: str) -> None:
    try:
        os.write(status_fd, (line + "\n").encode())
    except OSError:
        pass


def network_isolation() -> str:
    """How this process is cut off from the network; installs the audit hook if nothing is."""
    import socket

    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    if names == ["lo"]:
        # A user namespace whose map nobody wrote (the unisolated mode's unshare) is empty.
        mapped = Path("/proc/self/uid_map").read_text().strip()
        return "user+network-namespace" if not mapped else "network-namespace"

    def refuse_network(event: str, args: tuple[object, ...]) -> None:
        if event in _REFUSED_NETWORK_EVENTS:
            raise PermissionError(f"network access is disabled in the sandbox ({event})")

    sys.addaudithook(refuse_network)
    return "audit-hook"


def run(status_fd: int, check_network: bool) -> None:
    os.set_inheritable(status_fd, False)
    if check_network:
        report(status_fd, "network " + network_isolation())
    source = sys.stdin.read()
    linecache.cache["main.py"] = (len(source), None, source.splitlines(True), "main.py")
    main = types.ModuleType("__main__")
    main.__file__ = "main.py"
    sys.modules["__main__"] = main
    sys.argv = ["main.py"]
    try:
        exec(compile(source, "main.py", "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException as error:
        if isinstance(error, MemoryError):
            report(status_fd, "limit memory")
        # Printed from here so the lines of main.py (known only to linecache) are shown, and
        # without this module's own frame.
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)  # type: ignore[union-attr]
        sys.exit(1)


def supervise(status_fd: int, outbox_fd: int, work_dir: Path, max_processes: int) -> None:
    os.set_inheritable(outbox_fd, False)  # the generated code gets no handle on the outbox
    # Set here, inside the sandbox's user namespace, rather than on bwrap: the kernel counts it
    # per user per namespace, so this bounds this sandbox alone; and the limit bwrap had when it
    # made the namespace (left high) is what the host-wide count of the same user is held to.
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    cap = max_processes if hard == resource.RLIM_INFINITY else min(max_processes, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))
    report(status_fd, "started")
    child = subprocess.Popen(
        [sys.executable, "-I", "-u", __file__, "run", str(status_fd)], pass_fds=(status_fd,)
    )
    returncode = child.wait()
    report(status_fd, f"exit {returncode}")
    try:
        export_outputs(outbox_fd, work_dir)
    except OSError:
        pass  # the parent stopped reading (too much output); it says so itself


def export_outputs(outbox_fd: int, work_dir: Path) -> None:
    with os.fdopen(outbox_fd, "wb") as outbox, tarfile.open(fileobj=outbox, mode="w|") as tar:
        for folder, folders, files in os.walk(work_dir):
            # Hidden folders are caches that tools drop into HOME, not outputs.
            folders[:] = sorted(f for f in folders if not f.startswith(".") and f != "__pycache__")
            for name in sorted(files):
                path = Path(folder, name)
                relative = path.relative_to(work_dir).as_posix()
                if relative == DATASET_FILE:
                    continue
                try:
                    if not stat.S_ISREG(path.lstat().st_mode):
                        continue  # links and devices are not outputs
                    tar.add(path, arcname=relative, recursive=False)
                except (PermissionError, FileNotFoundError):
                    continue  # unreadable or already gone: not an output either


def main(argv: list[str]) -> None:
    match argv:
        case ["run", status_fd, *flags]:
            run(int(status_fd), "--check-network" in flags)
        case ["supervise", status_fd, outbox_fd, work_dir, max_processes]:
            supervise(int(status_fd), int(outbox_fd), Path(work_dir), int(max_processes))
        case _:
            sys.exit(
                f"usage: {__file__} run STATUS_FD [--check-network] | "
                "supervise STATUS_FD OUTBOX_FD WORK_DIR MAX_PROCESSES"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
