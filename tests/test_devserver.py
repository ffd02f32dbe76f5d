"""`make dev`'s launcher: all three parts come up, Ctrl-C stops them, runs survive a restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.test_service_integration import GOAL, awaiting_approval, start, wait_until

pytestmark = pytest.mark.integration


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def dev_stack(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """devserver.py as `make dev` runs it; stopped with SIGINT, as Ctrl-C would."""
    process = subprocess.Popen([sys.executable, "devserver.py"], cwd=ROOT, env=env)
    try:
        base_url = f"http://127.0.0.1:{env['PORT']}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, "devserver.py exited during start-up"
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("the stack did not become healthy within 90 s")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_ctrl_c_stops_everything_and_runs_survive_a_restart(tmp_path: Path):
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HOST": "127.0.0.1",
        "PORT": str(ports["api"]),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "TEMPORAL_UI_PORT": str(ports["ui"]),
        "DATA_DIR": str(tmp_path / "data"),
        "LLM_PROVIDER": "offline",
        "LOG_LEVEL": "WARNING",
        "WORKER_METRICS_PORT": str(free_port()),  # not the default: other tests' workers run too
        "TRAINING_TUNING_SECONDS": os.environ["TRAINING_TUNING_SECONDS"],
    }

    with dev_stack(env) as first, httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}",
                                              timeout=30) as api:  # fmt: skip
        assert httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=10).status_code == 200
        workflow_id = start(api, "examples/churn.csv")
        wait_until(api, workflow_id, awaiting_approval)
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=45) == 0
    assert (tmp_path / "data" / "temporal.db").exists()
    assert not any(port_open(port) for port in ports.values()), "something is still listening"

    with dev_stack(env), httpx.Client(base_url=f"http://127.0.0.1:{ports['api']}",
                                      timeout=30) as api:  # fmt: skip
        waiting = wait_until(api, workflow_id, awaiting_approval)
        assert waiting["user_goal"] == GOAL
        assert api.post(f"/workflow/{workflow_id}/approve").status_code == 200
        done = wait_until(api, workflow_id, lambda b: b["status"] == "completed", timeout=120)
        assert done["human_approval"] == "APPROVED"
