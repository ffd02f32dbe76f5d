"""What the service costs over the engine: each figure a ratio to a bare SDK workflow's.

One dev server; on it a bare Temporal workflow of the run's shape with its own worker
(bench/bare_workflow.py), and the real workflow on the real worker with no-op agents and
executors (bench/noop_worker.py) behind the real API (uvicorn). Every driver waits the same
way, by polling a read that needs no worker at the same interval: the bare driver describes
the run, the service's drivers read its status (REST) or its memo (Temporal client). The two
sides alternate in rounds, so a busy neighbour on the machine slows both.

`python -m bench.engine_floor` (part of `make bench`). BENCH_SCALE multiplies every count;
BENCH_PARKED_RUNS sets the parked runs alone.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from bench.bare_workflow import BARE_WORKFLOW_TYPE, GATE_ATTRIBUTE, GATE_OPEN
from bench.stack import Measured, Stack, new_stack
from workflows.contract import (
    QUERY_STATE,
    RUN_STATUS_ATTRIBUTE,
    UPDATE_APPROVE,
    WORKFLOW_TYPE,
)
from workflows.data_science_run import STATUS_MEMO_KEY
from workflows.models import Decision, RunInput, RunState, RunStatus

GOAL = "Benchmark run"
DATASET_URL = "https://example.com/churn.csv"
CONCURRENCY = 32
WAIT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Scale:
    serial_runs: int  # per driver
    concurrent_rounds: int
    runs_per_round: int  # per side and round, CONCURRENCY at a time
    read_requests: int  # per read, per side and round
    read_rounds: int
    parked_runs: int  # per side
    park_chunk: int

    @classmethod
    def from_environment(cls) -> Scale:
        factor = float(os.environ.get("BENCH_SCALE", "1"))

        def scaled(count: int, least: int = 1) -> int:
            return max(least, round(count * factor))

        parked = int(os.environ.get("BENCH_PARKED_RUNS", scaled(1000, 64)))
        return cls(
            serial_runs=scaled(20, 3),
            concurrent_rounds=2,
            runs_per_round=scaled(64, CONCURRENCY),
            read_requests=scaled(800, 64),
            read_rounds=2,
            parked_runs=parked,
            park_chunk=max(CONCURRENCY, math.ceil(parked / 5)),
        )


# --- Waiting, the same way on both sides -----------------------------------------------------


async def poll_until(check: Callable[[], Awaitable[bool]], interval: float) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT_SECONDS
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {WAIT_TIMEOUT_SECONDS} s")
        await asyncio.sleep(interval)


async def _closed(handle: WorkflowHandle[object, object]) -> bool:
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.RUNNING:
        return False
    if description.status != WorkflowExecutionStatus.COMPLETED:
        raise RuntimeError(f"run {handle.id} ended {description.status}")
    return True


class BareDriver:
    """Starts, approves and awaits bare runs through the Temporal client."""

    name = "bare"

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    async def start(self, run_id: str) -> None:
        await self.client.start_workflow(
            BARE_WORKFLOW_TYPE, GOAL, id=run_id, task_queue=self.task_queue
        )

    async def parked(self, run_id: str) -> bool:
        description = await self.client.get_workflow_handle(run_id).describe()
        return description.typed_search_attributes.get(GATE_ATTRIBUTE) == GATE_OPEN

    async def approve(self, run_id: str) -> None:
        await self.client.get_workflow_handle(run_id).execute_update("approve")

    async def finished(self, run_id: str) -> bool:
        return await _closed(self.client.get_workflow_handle(run_id))

    def parked_query(self) -> str:
        # The mark stays after the run goes on: only running runs with it are waiting.
        return (
            f"WorkflowType = '{BARE_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND "
            f"{GATE_ATTRIBUTE.name} = '{GATE_OPEN}'"
        )

    def type_query(self) -> str:
        return f"WorkflowType = '{BARE_WORKFLOW_TYPE}'"


class ClientDriver:
    """The service's run driven straight through the Temporal client, as RunService does."""

    name = "service via client"

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue

    async def start(self, run_id: str) -> None:
        await self.client.start_workflow(
            WORKFLOW_TYPE,
            RunInput(user_goal=GOAL, dataset_url=DATASET_URL, owner="bench"),
            id=run_id,
            task_queue=self.task_queue,
        )

    async def _status(self, run_id: str) -> RunStatus | None:
        memo = await (await self.client.get_workflow_handle(run_id).describe()).memo()
        document = memo.get(STATUS_MEMO_KEY)
        return RunStatus(document["status"]) if document else None

    async def parked(self, run_id: str) -> bool:
        return await self._status(run_id) == RunStatus.AWAITING_APPROVAL

    async def approve(self, run_id: str) -> None:
        await self.client.get_workflow_handle(run_id).execute_update(
            UPDATE_APPROVE, Decision(by="bench")
        )

    async def finished(self, run_id: str) -> bool:
        return await _closed(self.client.get_workflow_handle(run_id))


class RestDriver:
    """The service's run driven over its REST API, as a user's script would."""

    name = "service via REST"

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def start(self, run_id: str) -> None:
        body = {"user_goal": GOAL, "dataset_url": DATASET_URL, "workflow_id": run_id}
        async with self.http.post("/workflow/start", json=body) as response:
            response.raise_for_status()

    async def _status(self, run_id: str) -> str:
        async with self.http.get(f"/workflow/{run_id}/status") as response:
            response.raise_for_status()
            document = await response.json()
        status = str(document["status"])
        if status in ("failed", "cancelled", "timed_out"):
            raise RuntimeError(f"run {run_id} ended {status}: {document}")
        return status

    async def parked(self, run_id: str) -> bool:
        return await self._status(run_id) == RunStatus.AWAITING_APPROVAL

    async def approve(self, run_id: str) -> None:
        async with self.http.post(f"/workflow/{run_id}/approve") as response:
            response.raise_for_status()

    async def finished(self, run_id: str) -> bool:
        return await self._status(run_id) == RunStatus.COMPLETED

    def parked_query(self) -> str:
        return (
            f"WorkflowType = '{WORKFLOW_TYPE}' AND "
            f"{RUN_STATUS_ATTRIBUTE.name} = '{RunStatus.AWAITING_APPROVAL.value}'"
        )

    def type_query(self) -> str:
        return f"WorkflowType = '{WORKFLOW_TYPE}'"


Driver = BareDriver | ClientDriver | RestDriver


async def one_run(driver: Driver, interval: float, run_id: str | None = None) -> float:
    run_id = run_id or f"wf-{driver.name.split()[0]}-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    await driver.start(run_id)
    await poll_until(lambda: driver.parked(run_id), interval)
    await driver.approve(run_id)
    await poll_until(lambda: driver.finished(run_id), interval)
    return time.perf_counter() - started


async def bounded(count: int, work: Callable[[int], Awaitable[object]]) -> list[object]:
    """`work(0..count-1)`, CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> object:
        async with gate:
            return await work(index)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def ratio(measured: float, baseline: float, target: float, *, higher_is_better: bool) -> dict:
    value = measured / baseline if baseline else math.inf
    meets = value >= target if higher_is_better else value <= target
    return {
        "baseline": round(baseline, 4),
        "measured": round(measured, 4),
        "ratio": round(value, 3),
        "target": f"{'>=' if higher_is_better else '<='} {round(target, 3)}",
        "meets_target": meets,
    }


def reported(measured: float, baseline: float) -> dict:
    """A ratio shown for reading, with no target to meet."""
    entry = ratio(measured, baseline, math.inf, higher_is_better=False)
    entry["target"] = "(reported only)"
    return entry


# --- The cases -------------------------------------------------------------------------------


async def serial_latency(drivers: list[Driver], runs: int) -> dict[str, list[float]]:
    """One run at a time, the drivers taking turns run by run."""
    latencies: dict[str, list[float]] = {d.name: [] for d in drivers}
    for _ in range(runs):
        for driver in drivers:
            latencies[driver.name].append(await one_run(driver, 0.01))
    return latencies


@dataclass
class Load:
    runs: int = 0
    seconds: float = 0.0
    worker_cpu: float = 0.0
    server_cpu: float = 0.0


async def concurrent_load(
    stack: Stack, pairs: list[tuple[Driver, Measured]], rounds: int, runs: int
) -> dict[str, Load]:
    """CONCURRENCY runs in flight; the sides alternate round by round."""
    loads = {driver.name: Load() for driver, _ in pairs}
    for _ in range(rounds):
        for driver, worker in pairs:
            load = loads[driver.name]
            worker_before, server_before = worker.cpu_seconds(), stack.server().cpu_seconds()
            started = time.perf_counter()
            await bounded(runs, lambda _, d=driver: one_run(d, 0.1))  # type: ignore[misc]
            load.seconds += time.perf_counter() - started
            load.runs += runs
            load.worker_cpu += worker.cpu_seconds() - worker_before
            load.server_cpu += stack.server().cpu_seconds() - server_before
    return loads


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def park(
    client: Client, driver: BareDriver | RestDriver, first: int, how_many: int
) -> tuple[float, list[str]]:
    """Start `how_many` runs and wait until all of them (and those before) wait for approval."""
    ids = [
        f"wf-park-{driver.name.split()[0]}-{first + i}-{uuid.uuid4().hex[:6]}"
        for i in range(how_many)
    ]
    started = time.perf_counter()
    await bounded(how_many, lambda i: driver.start(ids[i]))
    expected = first + how_many

    async def all_parked() -> bool:
        return await count(client, driver.parked_query()) >= expected

    await poll_until(all_parked, 0.25)
    return time.perf_counter() - started, ids


async def approve_all(client: Client, driver: BareDriver | RestDriver, ids: list[str]) -> float:
    """Approve every parked run and wait until all of them have completed."""
    completed = f"{driver.type_query()} AND ExecutionStatus = 'Completed'"
    expected = await count(client, completed) + len(ids)
    started = time.perf_counter()
    await bounded(len(ids), lambda i: driver.approve(ids[i]))

    async def all_completed() -> bool:
        return await count(client, completed) >= expected

    await poll_until(all_completed, 0.25)
    return time.perf_counter() - started


async def timed_requests(count_: int, request: Callable[[int], Awaitable[object]]) -> list[float]:
    async def timed(index: int) -> float:
        started = time.perf_counter()
        await request(index)
        return time.perf_counter() - started

    return [float(t) for t in await bounded(count_, timed)]  # type: ignore[arg-type]


async def reads(
    stack: Stack,
    client: Client,
    http: aiohttp.ClientSession,
    ids: list[str],
    requests: int,
    rounds: int,
) -> dict[str, dict[str, list[float] | float]]:
    """Status, state and list over REST against describe, query and list on the client, with
    the CPU each request costs the API and the server (where the REST side's time goes)."""
    list_query = f"WorkflowType = '{WORKFLOW_TYPE}'"

    async def rest_get(path: str) -> None:
        async with http.get(path) as response:
            response.raise_for_status()
            await response.read()

    async def client_list(_: int) -> None:
        iterator = client.list_workflows(list_query, page_size=50)
        await iterator.fetch_next_page()

    def describe(i: int) -> Awaitable[object]:
        return client.get_workflow_handle(ids[i % len(ids)]).describe()

    def query(i: int) -> Awaitable[object]:
        return client.get_workflow_handle(ids[i % len(ids)]).query(
            QUERY_STATE, result_type=RunState
        )

    cases: list[
        tuple[str, Callable[[int], Awaitable[object]], Callable[[int], Awaitable[object]]]
    ] = [
        ("status", describe, lambda i: rest_get(f"/workflow/{ids[i % len(ids)]}/status")),
        ("state", query, lambda i: rest_get(f"/workflow/{ids[i % len(ids)]}")),
        ("list", client_list, lambda i: rest_get("/workflows?limit=50")),
    ]
    results: dict[str, dict[str, list[float] | float]] = {}
    for name, baseline, measured in cases:
        entry = results.setdefault(name, {"client": [], "rest": [], "client_s": 0.0, "rest_s": 0.0})
        for _ in range(rounds):
            for side, work in (("client", baseline), ("rest", measured)):
                cpu_before = (stack.api().cpu_seconds(), stack.server().cpu_seconds())
                started = time.perf_counter()
                entry[side].extend(await timed_requests(requests, work))  # type: ignore[union-attr]
                entry[f"{side}_s"] += time.perf_counter() - started  # type: ignore[operator]
                for process, before in zip(("api", "server"), cpu_before, strict=True):
                    spent = getattr(stack, process)().cpu_seconds() - before
                    key = f"{side}_{process}_cpu_s"
                    entry[key] = float(entry.get(key, 0.0)) + spent  # type: ignore[arg-type]
    return results


# --- The report ------------------------------------------------------------------------------


async def measure(scale: Scale) -> dict:
    stack, folder = new_stack()
    results: dict = {"scale": scale.__dict__, "concurrency": CONCURRENCY}
    with folder:
        async with stack:
            await stack.start()
            assert stack.client is not None
            client = stack.client
            # aiohttp: the lightest Python HTTP client at hand, so the load generator's own cost
            # (httpx spends more CPU per request than the API does) does not hide the API's.
            async with aiohttp.ClientSession(
                base_url=stack.api_url,
                connector=aiohttp.TCPConnector(limit=CONCURRENCY * 2),
                timeout=aiohttp.ClientTimeout(total=60),
            ) as http:
                bare = BareDriver(client, stack.bare_task_queue)
                direct = ClientDriver(client, stack.task_queue)
                rest = RestDriver(http)
                # Warm both workers' sandboxes and every connection before measuring.
                await serial_latency([bare, direct, rest], 2)

                latencies = await serial_latency([bare, direct, rest], scale.serial_runs)
                p50 = {name: statistics.median(values) for name, values in latencies.items()}
                results["serial_latency_p50_s"] = {
                    "rest_vs_bare": ratio(
                        p50[rest.name], p50[bare.name], 1.25, higher_is_better=False
                    ),
                    "client_vs_bare": ratio(
                        p50[direct.name], p50[bare.name], 1.25, higher_is_better=False
                    ),
                }

                loads = await concurrent_load(
                    stack,
                    [(bare, stack.bare_worker()), (rest, stack.worker()), (direct, stack.worker())],
                    scale.concurrent_rounds,
                    scale.runs_per_round,
                )
                b, r, d = loads[bare.name], loads[rest.name], loads[direct.name]
                results["throughput_32_concurrent_runs_per_s"] = ratio(
                    r.runs / r.seconds, b.runs / b.seconds, 0.8, higher_is_better=True
                )
                # The same runs driven through the Temporal client: what the REST hop costs.
                results["throughput_32_concurrent_via_client_runs_per_s"] = reported(
                    d.runs / d.seconds, b.runs / b.seconds
                )
                results["worker_cpu_s_per_run"] = ratio(
                    r.worker_cpu / r.runs, b.worker_cpu / b.runs, 1.5, higher_is_better=False
                )
                results["server_cpu_s_per_run"] = reported(
                    r.server_cpu / r.runs, b.server_cpu / b.runs
                )

                # Parked runs, in interleaved chunks; reads are measured while they wait.
                idle = {
                    "bare": stack.bare_worker().rss_bytes(),
                    "service": stack.worker().rss_bytes(),
                }
                parked_ids: dict[str, list[str]] = {bare.name: [], rest.name: []}
                park_seconds = {bare.name: 0.0, rest.name: 0.0}
                done = 0
                while done < scale.parked_runs:
                    chunk = min(scale.park_chunk, scale.parked_runs - done)
                    for driver in (bare, rest):
                        seconds, ids = await park(client, driver, done, chunk)
                        park_seconds[driver.name] += seconds
                        parked_ids[driver.name] += ids
                    done += chunk
                n = scale.parked_runs
                results["parked_runs"] = n
                results["parking_runs_per_s"] = ratio(
                    n / park_seconds[rest.name],
                    n / park_seconds[bare.name],
                    0.5,
                    higher_is_better=True,
                )
                rss = {
                    "bare": stack.bare_worker().rss_bytes(),
                    "service": stack.worker().rss_bytes(),
                }
                results["worker_rss_mb_parked"] = ratio(
                    rss["service"] / 2**20, rss["bare"] / 2**20, 2.0, higher_is_better=False
                )
                results["worker_rss_mb_parked"]["meets_target"] = (
                    rss["service"] <= 2 * rss["bare"] or rss["service"] <= 300 * 2**20
                )
                results["worker_rss_mb_parked"]["target"] = "<= 2.0 (or <= 300 MB)"
                results["worker_rss_kb_per_parked_run"] = {
                    side: round((rss[side] - idle[side]) / 1024 / n, 1) for side in rss
                }
                results["worker_rss_mb_before_parking"] = {
                    side: round(idle[side] / 2**20, 1) for side in idle
                }

                read_ids = parked_ids[rest.name][:100]
                read = await reads(
                    stack, client, http, read_ids, scale.read_requests, scale.read_rounds
                )
                for name, entry in read.items():
                    client_t, rest_t = entry["client"], entry["rest"]
                    assert isinstance(client_t, list) and isinstance(rest_t, list)
                    results[f"{name}_32_clients"] = {
                        "requests_per_s": ratio(
                            len(rest_t) / entry["rest_s"],  # type: ignore[operator]
                            len(client_t) / entry["client_s"],  # type: ignore[operator]
                            1 / 1.3,
                            higher_is_better=True,
                        ),
                        "p99_s": ratio(
                            percentile(rest_t, 0.99), percentile(client_t, 0.99), 1.3,
                            higher_is_better=False,
                        ),
                        # CPU per request, in ms: what the REST hop adds on this machine.
                        "cpu_ms_per_request": {
                            f"{side}_{process}": round(
                                float(entry[f"{side}_{process}_cpu_s"]) * 1000 / len(times), 3  # type: ignore[arg-type]
                            )
                            for side, times in (("client", client_t), ("rest", rest_t))
                            for process in ("api", "server")
                        },
                    }  # fmt: skip

                approve_seconds = {}
                for driver in (bare, rest):
                    approve_seconds[driver.name] = await approve_all(
                        client, driver, parked_ids[driver.name]
                    )
                results["approving_runs_per_s"] = ratio(
                    n / approve_seconds[rest.name],
                    n / approve_seconds[bare.name],
                    0.7,
                    higher_is_better=True,
                )
    return results


def run_benchmark() -> dict:
    return asyncio.run(measure(Scale.from_environment()))


def main() -> None:
    results = run_benchmark()
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
