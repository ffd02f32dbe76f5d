"""A new worker removes the scratch folders of workers that are gone, at once, by their locks."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.scratch import WorkerScratch, sweep
from tests.conftest import ServiceProcesses

pytestmark = pytest.mark.integration


def _folder_of(scratch: Path, pid: int, timeout: float = 30.0) -> Path:
    """The scratch folder the worker with this pid made (and locked) when it started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for lock in scratch.glob(f"*-{pid}-*.lock"):
            folder = lock.with_suffix("")
            if folder.is_dir():
                return folder
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} made no locked scratch folder within {timeout} s")


def test_a_new_worker_sweeps_the_scratch_of_a_sigkilled_worker_but_not_of_a_live_one(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = dev_server_env.client.service_client.config.target_host
    scratch = tmp_path / "scratch"
    workers = [ServiceProcesses(address, tmp_path) for _ in range(3)]
    try:
        killed, live = workers[0].start_worker(), workers[1].start_worker()
        killed_folder, live_folder = _folder_of(scratch, killed.pid), _folder_of(scratch, live.pid)
        (killed_folder / "attempt" / "work").mkdir(parents=True)  # as if killed mid-step
        (killed_folder / "attempt" / "work" / "model.joblib").write_bytes(b"x" * 1000)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)

        newcomer = workers[2].start_worker()
        newcomer_folder = _folder_of(scratch, newcomer.pid)

        # Swept at start-up though it is seconds old: its lock is free, so its worker is gone.
        deadline = time.monotonic() + 10
        while killed_folder.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not killed_folder.exists()
        assert not killed_folder.with_suffix(".lock").exists()
        assert live_folder.is_dir() and newcomer_folder.is_dir()
        assert live.poll() is None and newcomer.poll() is None
    finally:
        for worker in workers:
            worker.stop()


def test_a_held_lock_keeps_a_folder_however_old_and_a_released_one_frees_it(
    tmp_path: Path,
) -> None:
    held = WorkerScratch(tmp_path)
    released = WorkerScratch(tmp_path)
    released._lock.close()  # type: ignore[union-attr]  # what the kernel does when it dies

    assert sweep(tmp_path, legacy_max_age_seconds=0) == [released.identity]
    assert held.folder.is_dir() and not released.folder.exists()

    held.close()
    assert list(tmp_path.iterdir()) == []
