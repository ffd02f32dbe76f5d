"""What live progress costs Temporal: RunService calls per second with 1, 10 and 50 watchers.

The real thing end to end: the Temporal dev server, the real worker (offline agents) with a run
waiting for approval, and the API in this process with its RunService wrapped in a counter.
N clients follow `GET /workflow/{id}/events` over HTTP for a fixed window; the counter says how
often the API asked Temporal about the run. Each `RunService.state` call is two Temporal RPCs
(describe, then the `state` query answered by the worker).

    python -m bench.events_fanout          # also part of `make bench`
"""

from __future__ import annotations

import asyncio
import inspect
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.runs import RunService
from settings import Settings
from tests.conftest import TEMPORAL_CLI, ServiceProcesses, free_port
from tests.standins import ServerThread
from workflows.contract import SEARCH_ATTRIBUTES

WATCHER_COUNTS = (1, 10, 50)
GOAL = "Build a customer churn prediction model"
DATASET = "examples/churn.csv"


class CountingRunService:
    """RunService as it is, counting each call of each async method."""

    def __init__(self, inner: RunService) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attribute(*args, **kwargs)

        return counted

    def total(self) -> int:
        return sum(self.calls.values())


async def _watch(client: httpx.AsyncClient, path: str, events: Counter[str]) -> None:
    async with client.stream("GET", path) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                events[line.partition(":")[2].strip()] += 1


async def calls_per_second(
    base_url: str, counter: CountingRunService, workflow_id: str, watchers: int, window: float
) -> dict[str, float]:
    """RunService calls per second while `watchers` clients follow the run's events."""
    events: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=watchers + 5)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        path = f"/workflow/{workflow_id}/events"
        tasks = [asyncio.create_task(_watch(client, path, events)) for _ in range(watchers)]
        while events["status"] < watchers:  # every watcher connected and caught up
            await asyncio.sleep(0.05)
            for task in tasks:
                if task.done():
                    task.result()  # a watcher that failed says why
        before, started = counter.total(), time.monotonic()
        await asyncio.sleep(window)
        calls, elapsed = counter.total() - before, time.monotonic() - started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"watchers": watchers, "calls": calls, "seconds": elapsed, "per_second": calls / elapsed}


def _wait_until_awaiting_approval(
    base_url: str, workflow_id: str, worker: ServiceProcesses, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.worker is not None and worker.worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.worker.returncode}")
        status = httpx.get(f"{base_url}/workflow/{workflow_id}/status", timeout=30).json()
        if status.get("status") == "awaiting_approval":
            return
        if status.get("status") in ("failed", "cancelled", "timed_out"):
            raise RuntimeError(f"the benchmark run ended early: {status}")
        time.sleep(0.3)
    raise RuntimeError(f"{workflow_id} did not reach awaiting_approval in {timeout:g} s")


def measure_fanout(
    temporal_address: str,
    data_dir: Path,
    poll_seconds: float = 1.0,
    window: float = 10.0,
    watcher_counts: tuple[int, ...] = WATCHER_COUNTS,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start a worker and a run, serve the API here with a counted RunService, measure."""
    processes = ServiceProcesses(temporal_address, data_dir)
    # The API here sees what the worker sees: the same Temporal, task queue and data folder.
    shared: dict[str, object] = {
        name.lower(): value
        for name, value in processes.env.items()
        if name.lower() in Settings.model_fields
    }
    settings = Settings.model_validate({**shared, "events_poll_seconds": poll_seconds})
    app = create_app(settings)
    counter = CountingRunService(app.state.runs)
    app.state.runs = counter
    processes.start_worker()
    try:
        with ServerThread(app) as server:
            started = httpx.post(
                f"{server.url}/workflow/start",
                json={"user_goal": GOAL, "dataset_url": DATASET},
                timeout=30,
            )
            started.raise_for_status()
            workflow_id = started.json()["workflow_id"]
            _wait_until_awaiting_approval(server.url, workflow_id, processes)
            rows = []
            for watchers in watcher_counts:
                row = asyncio.run(
                    calls_per_second(server.url, counter, workflow_id, watchers, window)
                )
                report(
                    f"{watchers:>3} watchers: {row['calls']} RunService calls in "
                    f"{row['seconds']:.1f} s = {row['per_second']:.2f}/s"
                )
                rows.append(row)
    finally:
        processes.stop()
    by_count = {row["watchers"]: row for row in rows}
    first, last = by_count[watcher_counts[0]], by_count[watcher_counts[-1]]
    return {
        "poll_seconds": poll_seconds,
        "window_s": window,
        "temporal_rpcs_per_call": 2,
        "calls_per_second": {str(row["watchers"]): round(row["per_second"], 3) for row in rows},
        "baseline_calls": first["calls"],
        "measured_calls": last["calls"],
        "ratio": last["calls"] / max(first["calls"], 1),
    }


async def _dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(TEMPORAL_CLI),
        search_attributes=SEARCH_ATTRIBUTES,
        ip="127.0.0.1",
        port=free_port(),
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )


def run_benchmark() -> dict[str, Any]:
    """The `make bench` entry: its own dev server and data folder, removed afterwards."""
    loop = asyncio.new_event_loop()
    env = loop.run_until_complete(_dev_server())
    try:
        with tempfile.TemporaryDirectory() as folder:
            return measure_fanout(
                env.client.service_client.config.target_host,
                Path(folder),
                report=lambda line: print(line, flush=True),
            )
    finally:
        loop.run_until_complete(env.shutdown())
        loop.close()


if __name__ == "__main__":
    print(json.dumps({"events_50_vs_1_watchers_temporal_calls": run_benchmark()}, indent=2))
