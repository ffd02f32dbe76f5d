"""The local sandbox runs code isolated under bubblewrap (or unisolated on purpose), within limits.

Attacks through the whole service are in tests/test_sandbox_attacks.py; these exercise the
sandbox directly.
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities import pids_cgroup
from activities.pids_cgroup import PidsCgroup
from activities.sandbox import (
    Isolation,
    LimitExceeded,
    NetworkIsolation,
    SandboxLimits,
    SandboxUnavailable,
    run_python,
)
from tests.host_processes import live_processes_with, new_marker

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
    assert run.isolation is Isolation.BUBBLEWRAP
    assert not (workdir / "stale-from-a-previous-attempt.txt").exists()
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
    assert "Connection refused" in run.stdout  # its own loopback, where nothing listens
    assert run.network_isolation is NetworkIsolation.BUBBLEWRAP


async def test_the_audit_hook_fallback_also_refuses_connections(
    dataset: Path, tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]

    run = await run_python(
        CONNECT.format(port=port),
        dataset,
        tmp_path / "work",
        LIMITS,
        isolation=Isolation.UNISOLATED,
        use_namespaces=False,
    )

    assert run.isolation is Isolation.UNISOLATED
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
    marker = _marker()
    script = code(
        f"""
        import os, subprocess
        subprocess.Popen(["sleep", "{marker}"])  # a plain background child
        if os.fork() == 0:  # and a daemon: double fork, new session
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "{marker}"])
            os._exit(0)
        print("spawned")
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 0, run.stderr
    assert run.stdout == "spawned\n"
    assert run.duration_seconds < 10
    assert await _all_ended(marker)


async def test_cancelling_the_caller_kills_every_process_of_the_run(
    dataset: Path, tmp_path: Path
) -> None:
    marker = _marker()
    script = f"import subprocess\nsubprocess.run(['sleep', '{marker}'])\n"
    task = asyncio.create_task(run_python(script, dataset, tmp_path / "work", LIMITS))
    for _ in range(200):
        if _host_processes_running(marker):
            break
        await asyncio.sleep(0.05)
    assert _host_processes_running(marker), "the code never started"

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await _all_ended(marker)


async def test_matplotlib_plots_inside_the_sandbox(dataset: Path, tmp_path: Path) -> None:
    script = code(
        """
        import matplotlib.pyplot as plt
        import pandas as pd, os
        frame = pd.read_csv(os.environ["DATASET_PATH"])
        frame["age"].plot.hist()
        plt.savefig("age.png")
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 0, run.stderr
    assert run.stderr == ""  # no complaint about fonts or caches
    assert run.output_files == ["age.png"]
    assert (tmp_path / "work" / "age.png").read_bytes().startswith(b"\x89PNG")


async def test_the_code_sees_neither_host_files_nor_host_processes(
    dataset: Path, tmp_path: Path
) -> None:
    script = code(
        f"""
        import os
        for path in ["/etc/shadow", "/etc/hostname", {str(dataset)!r}, {str(tmp_path)!r}]:
            print(path, os.path.exists(path))
        print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        print("uid", os.getuid(), os.getgid())
        print("caps", [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")])
        for path in ["/usr/evil", "/evil", "/dev/evil", {str(dataset)!r}, "dataset.csv"]:
            try:
                open(path, "a").write("x")
                print(path, "written")
            except OSError as error:
                print(path, type(error).__name__)
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "/etc/shadow False" in lines and "/etc/hostname False" in lines
    assert f"{dataset} False" in lines and f"{tmp_path} False" in lines
    pids = next(line for line in lines if line.startswith("pids"))
    assert max(int(p) for p in pids.split("[")[1].rstrip("]").split(",")) < 10  # its own few
    assert "uid 65534 65534" in lines
    assert "caps ['0000000000000000']" in lines
    assert "written" not in run.stdout
    assert await asyncio.to_thread(dataset.read_text) == "age,churned\n30,0\n40,1\n50,0\n"


async def test_a_fork_storm_is_stopped_at_the_process_limit(dataset: Path, tmp_path: Path) -> None:
    limits = SandboxLimits(wall_seconds=60, memory_mb=1024, cpu_seconds=30, max_processes=32)
    script = code(
        """
        import os, time
        started = 0
        try:
            for _ in range(400):
                if os.fork() == 0:
                    time.sleep(3)
                    os._exit(0)
                started += 1
        except OSError as error:
            print("refused:", type(error).__name__)
        print("started", started)
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", limits)

    assert run.exit_code == 0, run.stderr
    assert "refused: BlockingIOError" in run.stdout
    started = int(run.stdout.split("started ")[1])
    assert 0 < started < 32


async def test_the_work_folder_and_tmp_are_size_capped_and_vanish(
    dataset: Path, tmp_path: Path
) -> None:
    limits = SandboxLimits(wall_seconds=60, memory_mb=1024, cpu_seconds=30, disk_bytes=16 * 2**20)
    script = code(
        """
        for path in ["big.bin", "/tmp/big.bin", "/dev/shm/big.bin"]:
            try:
                with open(path, "wb") as out:
                    for _ in range(100):
                        out.write(b"x" * 2**20)
                print(path, "written")
            except OSError as error:
                print(path, error.strerror)
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", limits)

    assert run.exit_code == 0, run.stderr
    assert run.stdout.count("No space left on device") == 3, run.stdout
    assert "written" not in run.stdout
    # The partial file in the work folder is an output, bounded by the cap; the rest is gone.
    assert (tmp_path / "work" / "big.bin").stat().st_size <= 16 * 2**20


async def test_links_in_the_work_folder_are_not_outputs(dataset: Path, tmp_path: Path) -> None:
    script = code(
        """
        import os
        os.symlink("/etc/passwd", "passwd-link")
        os.symlink("/", "root-link")
        open("real.txt", "w").write("ok")
        """
    )

    run = await run_python(script, dataset, tmp_path / "work", LIMITS)

    assert run.exit_code == 0, run.stderr
    assert run.output_files == ["real.txt"]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["real.txt"]


async def test_unisolated_mode_runs_and_says_so(dataset: Path, tmp_path: Path) -> None:
    script = "import os\nopen(os.path.join(os.environ['OUTPUT_DIR'], 'out.txt'), 'w').write('x')\n"

    run = await run_python(
        script, dataset, tmp_path / "work", LIMITS, isolation=Isolation.UNISOLATED
    )

    assert run.exit_code == 0, run.stderr
    assert run.isolation is Isolation.UNISOLATED
    assert run.output_files == ["out.txt"]


async def test_without_bubblewrap_running_code_is_refused_with_what_to_do(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bwrap-here"))

    with pytest.raises(SandboxUnavailable) as refused:
        await run_python("print('never')\n", dataset, tmp_path / "work", LIMITS)

    message = str(refused.value)
    assert "bubblewrap (bwrap) is not installed" in message
    assert "apt-get install bubblewrap" in message and "SANDBOX=unisolated" in message


async def test_a_root_worker_without_a_pids_cgroup_is_refused(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root the kernel ignores RLIMIT_NPROC; without a cgroup there is no process limit.
    monkeypatch.setattr(pids_cgroup, "needed", lambda: True)
    monkeypatch.setattr(PidsCgroup, "create", classmethod(lambda cls, max_pids: None))

    with pytest.raises(SandboxUnavailable, match="non-root user"):
        await run_python("print('never')\n", dataset, tmp_path / "work", LIMITS)


def _marker() -> str:
    return new_marker(3000)


_host_processes_running = live_processes_with


async def _all_ended(marker: str) -> bool:
    """No process with the marker is left within two seconds (SIGKILL is not instant)."""
    for _ in range(40):
        if not await asyncio.to_thread(_host_processes_running, marker):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_runtime_that_lives_under_tmp_stays_visible_inside(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout (and its venv) under /tmp, as in a CI clone: the sandbox's private /tmp must
    not hide it. tmp_path is under /tmp, so it stands in for such a runtime folder."""
    from activities import bubblewrap

    runtime = tmp_path / "runtime-under-tmp"
    runtime.mkdir()
    (runtime / "marker.txt").write_text("visible")
    real = bubblewrap.python_runtime()
    monkeypatch.setattr(bubblewrap, "python_runtime", lambda: [*real, runtime])
    script = code(
        f"""
        from pathlib import Path
        print(Path({str(runtime / "marker.txt")!r}).read_text())
        """
    )
    workdir = tmp_path / "work"
    workdir.mkdir()

    run = await run_python(script, dataset, workdir, LIMITS)

    assert run.exit_code == 0, run.stderr
    assert "visible" in run.stdout
    assert run.isolation is Isolation.BUBBLEWRAP


@pytest.mark.parametrize("max_concurrent", [1, 2])
async def test_a_worker_runs_at_most_max_concurrent_sandboxes_at_once(
    dataset: Path, tmp_path: Path, max_concurrent: int
) -> None:
    """Three runs asked for at once: never more than the bound are under way together, and the
    wait does not count against a run's own wall clock."""
    limits = SandboxLimits(wall_seconds=2, memory_mb=512, cpu_seconds=30,
                           max_concurrent=max_concurrent)  # fmt: skip
    script = code(
        """
        import time
        print(time.time())
        time.sleep(1.0)
        print(time.time())
        """
    )
    runs = await asyncio.gather(
        *(run_python(script, dataset, tmp_path / f"work{i}", limits) for i in range(3))
    )

    assert all(run.succeeded for run in runs), [run.message for run in runs]
    spans = [tuple(float(t) for t in run.stdout.split()) for run in runs]
    most_at_once = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most_at_once == max_concurrent
