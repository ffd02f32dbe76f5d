"""The processes a benchmark measures: a dev server, the bare and the no-op worker, the API.

Each runs as its own subprocess on free loopback ports, so its CPU time and memory can be read
from /proc, and all of them are stopped when the stack closes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from workflows.contract import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Measured:
    """A subprocess whose CPU seconds and resident memory the benchmark reads."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path | None = None

    def cpu_seconds(self) -> float:
        # /proc/<pid>/stat fields 14 and 15: user and system time in clock ticks. The name
        # (field 2) may hold spaces, so split after its closing parenthesis.
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{self.name} (pid {self.process.pid}) reports no VmRSS")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text()[-2000:] if self.log else ""
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Stack:
    """Dev server, bare worker, no-op worker and API; `async with Stack.start(...)`."""

    data_dir: Path
    temporal_address: str
    bare_task_queue: str = field(default_factory=lambda: f"bare-{uuid.uuid4().hex[:8]}")
    task_queue: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    api_port: int = field(default_factory=free_port)
    processes: dict[str, Measured] = field(default_factory=dict)
    client: Client | None = None
    _exit: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def service_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(self.data_dir)),
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_TASK_QUEUE": self.task_queue,
            "DATA_DIR": str(self.data_dir),
            "LOG_LEVEL": "WARNING",
            "AUTH_MODE": "none",
            # The benchmark is the load; the abuse limits have their own tests.
            "RATE_LIMIT_DEFAULT": "100000000/minute",
            "RATE_LIMIT_START": "100000000/minute",
            "WORKER_METRICS_PORT": str(free_port()),
            # Extra settings for an experiment: BENCH_ENV_X=1 reaches the service as X=1.
            **{
                key.removeprefix("BENCH_ENV_"): value
                for key, value in os.environ.items()
                if key.startswith("BENCH_ENV_")
            },
        }

    def server(self) -> Measured:
        return self.processes["temporal server"]

    def worker(self) -> Measured:
        return self.processes["worker"]

    def bare_worker(self) -> Measured:
        return self.processes["bare worker"]

    def api(self) -> Measured:
        return self.processes["api"]

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Measured:
        log_path = self.data_dir / f"{name.replace(' ', '-')}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        measured = Measured(name, process, log_path)
        self.processes[name] = measured
        self._exit.callback(log.close)
        self._exit.callback(measured.stop)
        return measured

    async def start(self, *, bare: bool = True, api: bool = True) -> Stack:
        host, port = self.temporal_address.split(":")
        command = [str(BIN_DIR / "temporal"), "server", "start-dev", "--headless",
                   "--ip", host, "--port", port, "--http-port", str(free_port()),
                   "--metrics-port", str(free_port()), "--log-level", "error"]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            command += ["--search-attribute", f"{key.name}=Keyword"]
        self._spawn("temporal server", command)
        self.client = await self._connect()
        if bare:
            self._spawn("bare worker", [sys.executable, "-m", "bench.bare_workflow",
                                        self.temporal_address, self.bare_task_queue])  # fmt: skip
        self._spawn("worker", [sys.executable, "-m", "bench.noop_worker"], self.service_env)
        if api:
            self._spawn("api", [sys.executable, "-m", "uvicorn", "api.main:app", "--host",
                                "127.0.0.1", "--port", str(self.api_port), "--no-access-log"],
                        self.service_env)  # fmt: skip
            await self._wait_for_api()
        await self._wait_for_workers()
        return self

    async def _connect(self) -> Client:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            self.server().check_alive()
            try:
                return await Client.connect(
                    self.temporal_address, data_converter=pydantic_data_converter
                )
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _wait_for_api(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        async with httpx.AsyncClient() as http:
            while True:
                self.api().check_alive()
                try:
                    if (await http.get(f"{self.api_url}/health", timeout=2)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not become healthy within a minute")
                await asyncio.sleep(0.2)

    async def _wait_for_workers(self) -> None:
        """Both workers print "ready" once they poll their task queues."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        names = [n for n in ("bare worker", "worker") if n in self.processes]
        while True:
            for name in names:
                self.processes[name].check_alive()
            logs = [(self.data_dir / f"{n.replace(' ', '-')}.log").read_text() for n in names]
            if all("ready" in log for log in logs):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start within a minute")
            await asyncio.sleep(0.2)

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._exit.aclose()


def new_stack() -> tuple[Stack, tempfile.TemporaryDirectory[str]]:
    folder = tempfile.TemporaryDirectory(prefix="bench-")
    return Stack(Path(folder.name), f"127.0.0.1:{free_port()}"), folder
