"""The local sandbox runs code in a fresh folder, without secrets or network, within its limits."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.sandbox import LimitExceeded, NetworkIsolation, SandboxLimits, run_python

LIMITS = SandboxLimits(wall_seconds=30, memory_mb=1024, cpu_seconds=30, output_bytes=64 * 1024)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "churn.csv"
    path.parent.mkdir()
    path.write_text("age,churned\n30,0\n40,1\n50,0\n")
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening loopback socket the code will try to reach."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield server


def code(source: str) -> str:
    return textwrap.dedent(source).strip() + "\n"


async def test_a_normal_script_runs_in_an_empty_folder_and_its_outputs_are_listed(
    dataset: Path, tmp_path: Path
) -> None:
    script = code(
        """
        import json, os
        import pandas as pd
        print("files at start:", sorted(os.listdir(".")))
        frame = pd.read_csv(os.environ["DATASET_PATH"])
        out = os.environ["OUTPUT_DIR"]
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump({"rows": len(frame)}, f)
        os.makedirs(os.path.join(out, "plots"))
        open(os.path.join(out, "plots", "hist.png"), "wb").write(b"png")
        print("cwd is output dir:", os.getcwd() == out)
        """
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "stale-from-a-previous-attempt.txt").write_text("old")

    run = await run_python(script, dataset, workdir, LIMITS)

    assert run.exit_code == 0, run.stderr
    assert run.succeeded and run.limit_exceeded is None
    assert run.message == "exited with code 0"
    assert "files at start: ['dataset.csv']" in run.stdout
    assert "cwd is output dir: True" in run.stdout
    assert run.output_files == ["metrics.json", "plots/hist.png"]
    assert (workdir / "metrics.json").read_text() == '{"rows": 3}'
    original = await asyncio.to_thread(dataset.read_text)
    assert original.startswith("age,churned")  # untouched by the run
    assert 0 < run.duration_seconds < 30


async def test_relative_data_paths_still_reach_the_dataset(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DATA_DIR defaults to the relative "data"; the child runs in its own folder regardless.
    monkeypatch.chdir(tmp_path)
    script = "import os, pathlib; print(len(pathlib.Path(os.environ['DATASET_PATH']).read_text()))"
    run = await run_python(script, dataset.relative_to(tmp_path), Path("rel") / "work", LIMITS)
    assert run.exit_code == 0, run.stderr
    assert int(run.stdout.strip()) == len(dataset.read_text())


async def test_a_failing_script_reports_its_exit_code_and_traceback_with_source_lines(
    dataset: Path, tmp_path: Path
) -> None:
    script = code(
        """
        print("about to fail")
        value = {}["missing_column"]
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 1
    assert run.limit_exceeded is None
    assert run.stdout == "about to fail\n"
    assert 'File "main.py", line 2' in run.stderr
    assert 'value = {}["missing_column"]' in run.stderr
    assert "KeyError: 'missing_column'" in run.stderr


async def test_sys_exit_codes_pass_through(dataset: Path, tmp_path: Path) -> None:
    run = await run_python("import sys; sys.exit(3)\n", dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 3
    assert run.message == "exited with code 3"


async def test_an_infinite_loop_is_stopped_at_the_wall_clock_limit(
    dataset: Path, tmp_path: Path
) -> None:
    limits = SandboxLimits(wall_seconds=1, memory_mb=512, cpu_seconds=30)
    started = time.monotonic()

    run = await run_python(
        "import time\nprint('working', flush=True)\nwhile True: time.sleep(0.1)\n",
        dataset,
        tmp_path / "work",
        limits,
    )

    assert run.limit_exceeded is LimitExceeded.WALL_CLOCK
    assert run.message == "exceeded the 1 s wall-clock limit"
    assert run.exit_code < 0  # killed
    assert run.stdout == "working\n"  # what it printed before is kept
    assert time.monotonic() - started < 10


async def test_a_memory_hog_is_stopped_at_the_memory_limit(dataset: Path, tmp_path: Path) -> None:
    limits = SandboxLimits(wall_seconds=30, memory_mb=512, cpu_seconds=30)
    hog = code(
        """
        chunks = []
        while True:
            chunks.append(bytearray(64 * 1024 * 1024))
        """
    )

    run = await run_python(hog, dataset, tmp_path / "work", limits)

    assert run.limit_exceeded is LimitExceeded.MEMORY
    assert run.message == "exceeded the 512 MB memory limit"
    assert "MemoryError" in run.stderr


async def test_a_cpu_burner_is_stopped_at_the_cpu_time_limit(dataset: Path, tmp_path: Path) -> None:
    limits = SandboxLimits(wall_seconds=30, memory_mb=512, cpu_seconds=1)

    run = await run_python("while True: pass\n", dataset, tmp_path / "work", limits)

    assert run.limit_exceeded is LimitExceeded.CPU
    assert run.message == "exceeded the CPU time limit (1 s)"


async def test_the_code_sees_none_of_the_workers_secrets(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-test-secret")
    script = code(
        """
        import os
        print("key:", os.environ.get("OPENAI_API_KEY"))
        print("leaks:", [k for k, v in os.environ.items() if "secret" in v])
        print("names:", sorted(os.environ))
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 0, run.stderr
    assert "key: None" in run.stdout
    assert "leaks: []" in run.stdout
    assert "sk-test-secret" not in run.stdout
    assert "HOME" in run.stdout and "DATASET_PATH" in run.stdout and "OUTPUT_DIR" in run.stdout


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
except OSError as error:
    print("refused:", error)
else:
    print("connected")
"""


async def test_network_connections_fail_inside_the_sandbox(
    dataset: Path, tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]

    run = await run_python(CONNECT.format(port=port), dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 0, run.stderr
    assert "refused:" in run.stdout
    with pytest.raises(BlockingIOError):
        listener.accept()  # nothing ever arrived
    # Whichever mechanism this platform allows is reported; on Linux as root it is a namespace.
    assert run.network_isolation is not NetworkIsolation.UNKNOWN
    print(f"network isolation in effect: {run.network_isolation.value}")


async def test_the_audit_hook_fallback_also_refuses_connections(
    dataset: Path, tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]

    run = await run_python(
        CONNECT.format(port=port), dataset, tmp_path / "work", LIMITS, use_namespaces=False
    )

    assert run.network_isolation is NetworkIsolation.AUDIT_HOOK
    assert "refused: network access is disabled in the sandbox" in run.stdout
    with pytest.raises(BlockingIOError):
        listener.accept()


async def test_output_beyond_the_cap_is_dropped_from_the_middle_and_counted(
    dataset: Path, tmp_path: Path
) -> None:
    limits = SandboxLimits(wall_seconds=30, memory_mb=512, cpu_seconds=30, output_bytes=1000)
    script = "print('FIRST')\nfor i in range(20000): print('x' * 50)\nprint('LAST')\n"

    run = await run_python(script, dataset, tmp_path / "work", limits)

    assert run.exit_code == 0
    assert run.stdout.startswith("FIRST\n")
    assert run.stdout.endswith("LAST\n")
    assert run.stdout_discarded_bytes == len("FIRST\n") + 20000 * 51 + len("LAST\n") - 1000
    assert f"[... {run.stdout_discarded_bytes} bytes of output discarded ...]" in run.stdout


async def test_background_processes_do_not_outlive_the_run(dataset: Path, tmp_path: Path) -> None:
    script = code(
        """
        import subprocess
        child = subprocess.Popen(["sleep", "60"])
        print(child.pid)
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 0, run.stderr
    assert run.limit_exceeded is None
    assert run.duration_seconds < 10
    assert await _has_ended(int(run.stdout.strip()))


async def test_cancelling_the_caller_kills_the_process(dataset: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    script = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    task = asyncio.create_task(run_python(script, dataset, workdir, LIMITS))
    for _ in range(100):
        if (workdir / "pid").exists() and (workdir / "pid").read_text():
            break
        await asyncio.sleep(0.05)
    pid = int((workdir / "pid").read_text())

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await _has_ended(pid)


async def _has_ended(pid: int) -> bool:
    """Gone, or a zombie waiting for its reaper, within a second (SIGKILL is not instant)."""
    for _ in range(20):
        try:
            status = await asyncio.to_thread(Path(f"/proc/{pid}/status").read_text)
        except FileNotFoundError:
            return True
        if "State:\tZ" in status:
            return True
        await asyncio.sleep(0.05)
    return False
