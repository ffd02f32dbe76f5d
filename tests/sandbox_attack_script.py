"""Generated "EDA" code that attacks the sandbox; tests/test_sandbox_attacks.py has it approved.

Each attack records what happened under its name in verdicts.json (in OUTPUT_DIR, so it is
published as an artifact like any output): the exception that stopped it, or what it got. The
tests judge; this script only tries, within bounds of count and time, and then behaves like a
normal EDA script (it writes eda_summary.json and exits 0) so the run goes on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", ".")
PARAMS: dict[str, Any] = {}  # filled in by the test
MB = 1024 * 1024

verdicts: dict[str, dict[str, Any]] = {}


def attack(name: str) -> Callable[[Callable[[], dict[str, Any]]], None]:
    def record(attempt: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            verdict = attempt()
        except Exception as error:
            verdict = {"error": type(error).__name__, "detail": str(error)[:300]}
        verdict["seconds"] = round(time.monotonic() - started, 2)
        verdicts[name] = verdict
        print(name, json.dumps(verdict)[:200], flush=True)

    return record


def read_etc_shadow() -> dict[str, Any]:
    return {"read": Path("/etc/shadow").read_text()[:80]}


def read_temporal_db() -> dict[str, Any]:
    return {"read": Path(PARAMS["temporal_db"]).read_bytes()[:80].decode(errors="replace")}


def write_other_runs_artifact() -> dict[str, Any]:
    folder = Path(PARAMS["victim_artifacts"])
    outcome: dict[str, Any] = {}
    for name in ("eda_summary.json", "planted.txt"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text('{"target": "pwned"}')
            outcome[name] = "written"
        except OSError as error:
            outcome[name] = type(error).__name__
    if "written" in outcome.values():
        return outcome
    raise PermissionError(f"every write was refused: {outcome}")


def spawn_daemons() -> dict[str, Any]:
    """Ten double-forked, setsid'd sleepers meant to outlive the step."""
    spawned = 0
    for _ in range(10):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", PARAMS["daemon_marker"]])
            os._exit(0)
        os.wait()
        spawned += 1
    return {"spawned": spawned}


def signal_worker() -> dict[str, Any]:
    os.kill(PARAMS["worker_pid"], 0)  # only probing: a real attacker would send SIGKILL
    return {"reachable": True}


def visible_processes() -> dict[str, Any]:
    commands = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                commands.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return {"count": len(commands), "commands": commands}


def fork_300() -> dict[str, Any]:
    started = 0
    try:
        for _ in range(300):
            if os.fork() == 0:
                time.sleep(2)
                os._exit(0)
            started += 1
    except OSError as error:
        return {"started": started, "error": type(error).__name__}
    finally:
        _reap_children()
    return {"started": started}


def write_100mb_outside() -> dict[str, Any]:
    name = PARAMS["big_file_name"]
    outcome = {}
    for folder in ("/tmp", PARAMS["data_dir"], "/", "/dev/shm", "/usr", PARAMS["victim_artifacts"]):
        path = Path(folder) / name
        written = 0
        try:
            with path.open("wb") as out:
                for _ in range(100):
                    out.write(b"x" * MB)
                    written += MB
            outcome[str(path)] = {"written": written}
        except OSError as error:
            outcome[str(path)] = {"written": written, "error": type(error).__name__}
        if folder in ("/tmp", "/dev/shm"):
            path.unlink(missing_ok=True)  # free the private tmpfs for the attacks that follow
    return outcome


def read_worker_environ() -> dict[str, Any]:
    outcome = {}
    for pid in ("1", str(os.getppid()), "self", str(PARAMS["worker_pid"])):
        try:
            outcome[pid] = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError as error:
            outcome[pid] = type(error).__name__
    return outcome


def connect_service_ports() -> dict[str, Any]:
    connected, refused = [], {}
    for host in ["127.0.0.1", *PARAMS["host_addresses"]]:
        for port in PARAMS["ports"]:
            try:
                socket.create_connection((host, port), timeout=1).close()
                connected.append(f"{host}:{port}")
            except OSError as error:
                refused[f"{host}:{port}"] = type(error).__name__
    try:
        with urllib.request.urlopen(PARAMS["api_url"] + "/health", timeout=2) as response:
            http = f"HTTP {response.status}"
    except OSError as error:
        http = type(error).__name__
    return {"connected": connected, "refused": refused, "http": http}


def write_data_dir() -> dict[str, Any]:
    Path(PARAMS["data_dir"], "pwned.txt").write_text("pwned")
    return {"written": True}


def fork_storm() -> dict[str, Any]:
    """Fork as fast as possible for up to 5 s; every child forks too, then sleeps."""
    started = refused = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and refused < 50:
        try:
            if os.fork() == 0:
                try:
                    if os.fork() == 0:
                        time.sleep(3)
                        os._exit(0)
                except OSError:
                    pass
                time.sleep(3)
                os._exit(0)
            started += 1
        except OSError:
            refused += 1
            time.sleep(0.01)
    _reap_children()
    return {"started": started, "refused": refused}


def _reap_children() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def main() -> None:
    for name, attempt in [
        ("read_etc_shadow", read_etc_shadow),
        ("read_temporal_db", read_temporal_db),
        ("write_other_runs_artifact", write_other_runs_artifact),
        ("spawn_daemons", spawn_daemons),
        ("signal_worker", signal_worker),
        ("visible_processes", visible_processes),
        ("fork_300", fork_300),
        ("write_100mb_outside", write_100mb_outside),
        ("read_worker_environ", read_worker_environ),
        ("connect_service_ports", connect_service_ports),
        ("write_data_dir", write_data_dir),
        ("fork_storm", fork_storm),
    ]:
        attack(name)(attempt)
    with open(os.path.join(OUTPUT_DIR, "verdicts.json"), "w") as out:
        json.dump(verdicts, out, indent=1)
    rows = sum(1 for _ in open(DATASET_PATH)) - 1
    with open(os.path.join(OUTPUT_DIR, "eda_summary.json"), "w") as out:
        json.dump({"rows": rows, "attacks": sorted(verdicts)}, out)
    print("verdicts written", file=sys.stderr)


if __name__ == "__main__":
    main()
    subprocess.run(["true"], check=False)  # the sandbox still runs ordinary programs
