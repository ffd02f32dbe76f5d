"""The service's worker with no-op agents and executors, for `make bench` only.

The real workflows, sandbox, data converter, interceptors and worker options (worker.py's
`WORKFLOWS` and `worker_tuning()`); only the activities are stand-ins, registered under the real
names and answering at once with the smallest valid results. So what the benchmark measures is
what the service adds around the engine, not what models or generated code cost. Settings come
from the environment as for `python worker.py`; BENCH_WORKER_OPTIONS (JSON, e.g.
`{"max_concurrent_activities": 100}`) overrides worker options for an experiment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.worker import Worker

from settings import Settings
from worker import WORKFLOWS, connect, worker_tuning
from worker_telemetry import WorkerTelemetry
from workflows.contract import ActivityName
from workflows.models import (
    AgentContext,
    CodeOutcome,
    ColumnProfile,
    DatasetInfo,
    DatasetProfile,
    DatasetRequest,
    ExecutionRequest,
    ExecutionResult,
    GeneratedCode,
    LlmUsage,
    ResearchOutcome,
    ResearchPlan,
    Review,
    ReviewOutcome,
)

NO_USAGE = LlmUsage(provider="noop", model="noop")


@activity.defn(name=ActivityName.FETCH_DATASET)
async def fetch_dataset(request: DatasetRequest) -> DatasetInfo:
    profile = DatasetProfile(
        rows=1,
        columns=[ColumnProfile(name="target", kind="numeric", dtype="int64")],
        target="target",
        task_type="classification",
    )
    return DatasetInfo(
        source_url=request.dataset_url,
        file_path=f"/noop/{request.workflow_id}.csv",
        size_bytes=1,
        sha256="0" * 64,
        profile=profile,
    )


@activity.defn(name=ActivityName.RESEARCH)
async def research(context: AgentContext) -> ResearchOutcome:
    plan = ResearchPlan(steps=["model"], target="target", task_type="classification")
    return ResearchOutcome(plan=plan, usage=NO_USAGE)


@activity.defn(name=ActivityName.DATA_ENGINEERING)
async def data_engineering(context: AgentContext) -> CodeOutcome:
    return CodeOutcome(code=GeneratedCode(code="pass"), usage=NO_USAGE)


@activity.defn(name=ActivityName.EXECUTE_EDA)
async def execute_eda(request: ExecutionRequest) -> ExecutionResult:
    return ExecutionResult(backend="noop", exit_code=0, duration_seconds=0.0)


@activity.defn(name=ActivityName.ML)
async def ml(context: AgentContext) -> CodeOutcome:
    return CodeOutcome(code=GeneratedCode(code="pass"), usage=NO_USAGE)


@activity.defn(name=ActivityName.TRAIN_MODEL)
async def train_model(request: ExecutionRequest) -> ExecutionResult:
    return ExecutionResult(
        backend="noop", exit_code=0, duration_seconds=0.0, metrics={"score": 1.0}
    )


@activity.defn(name=ActivityName.CRITIC)
async def critic(context: AgentContext) -> ReviewOutcome:
    return ReviewOutcome(review=Review(verdict="accept", summary="ok"), usage=NO_USAGE)


NOOP_ACTIVITIES: list[Callable[..., Any]] = [
    fetch_dataset,
    research,
    data_engineering,
    execute_eda,
    ml,
    train_model,
    critic,
]


async def main() -> None:
    settings = Settings()
    telemetry = WorkerTelemetry.start(settings)  # the same metrics runtime as the real worker
    client = await connect(settings, telemetry.runtime)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=NOOP_ACTIVITIES,
        **{**worker_tuning(), **json.loads(os.environ.get("BENCH_WORKER_OPTIONS", "{}"))},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print("ready", flush=True)
        await stop.wait()
    telemetry.stop()


if __name__ == "__main__":
    asyncio.run(main())
