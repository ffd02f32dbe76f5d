"""The Temporal worker: wires settings, the agents' brain and the executors to the task queue.

Run `python worker.py` against any Temporal (the dev server from `make dev`, or a cluster).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.agents import AgentActivities
from activities.artifacts import ArtifactStore
from activities.datasets import DatasetActivities
from activities.executors import ExecutionActivities
from activities.notifications import NotificationActivities
from activities.prediction import PredictionActivities
from activities.storage import ARTIFACTS_PREFIX, storage_from_settings
from activities.team import build_agents
from activities.telemetry import ActivityTelemetryInterceptor
from json_logging import configure_logging
from settings import Settings
from telemetry import WORKER_SERVICE, configure_tracing, instrument_httpx
from temporal_connection import temporal_connect_options
from worker_telemetry import WorkerTelemetry
from workflows.data_science_run import DataScienceRun
from workflows.event_delivery import DeliverRunEvent
from workflows.prediction import ScoreRows

logger = logging.getLogger("orchestrator.worker")


def build_worker(client: Client, settings: Settings) -> Worker:
    # DATA_DIR, or object storage shared with the API and the other workers (STORAGE_URL).
    storage = storage_from_settings(settings)
    store = ArtifactStore(storage, ARTIFACTS_PREFIX)
    agents = AgentActivities(build_agents(settings), store)
    datasets = DatasetActivities(settings, store, storage=storage)
    executions = ExecutionActivities(settings, store)
    predictions = PredictionActivities(settings, store, scratch_dir=executions.scratch_dir)
    notifications = NotificationActivities(settings)
    if swept := executions.sweep_stale_scratch():
        logger.info("Removed scratch folders of killed workers", extra={"folders": swept})
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=[
            datasets.fetch_dataset,
            *agents.all(),
            executions.execute_eda,
            executions.train_model,
            predictions.score_rows,
            notifications.notify,
        ],
        **worker_tuning(),
    )


WORKFLOWS = [DataScienceRun, DeliverRunEvent, ScoreRows]
ACTIVITY_SLOTS = 32


def worker_tuning() -> dict[str, Any]:
    """Everything about the Worker but its workflows and activities; `make bench` runs its
    no-op worker (bench/noop_worker.py) with the same, so the figures are this worker's."""
    return {
        "workflow_runner": workflow_runner(),
        # Step durations, retries, LLM usage (activities/telemetry.py); tracing comes with the
        # client's TracingInterceptor.
        "interceptors": [ActivityTelemetryInterceptor()],
        # Enough slots that one is free when a workflow task schedules the next step: the server
        # then hands the activity back in its reply (eager dispatch) instead of through a task
        # queue round trip. At 8, the pollers' reserved slots left none free under load and
        # every activity went the long way. Sandboxed work has its own, smaller bound
        # (EXECUTION_MAX_CONCURRENT).
        "max_concurrent_activities": ACTIVITY_SLOTS,
        "graceful_shutdown_timeout": timedelta(seconds=10),
    }


def workflow_runner() -> SandboxedWorkflowRunner:
    """The SDK's sandbox, with our own deterministic modules and pydantic passed through.

    By default the sandbox re-imports them for every run, which costs most of a parked run's
    memory and CPU; they keep no per-run state, so one shared import is safe.
    """
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "workflows", "pydantic", "pydantic_core", "annotated_types"
        )
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        **temporal_connect_options(settings),
        runtime=runtime,  # None: the SDK's default runtime, without a metrics exporter
    )


async def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    configure_tracing(WORKER_SERVICE)
    instrument_httpx()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    telemetry = WorkerTelemetry.start(settings)  # probes answer (not ready) while connecting
    client = await connect(settings, telemetry.runtime)
    worker = build_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logger.info(
        "Worker started",
        extra={"task_queue": settings.temporal_task_queue, "address": settings.temporal_address},
    )
    async with worker:
        readiness = asyncio.create_task(telemetry.watch_readiness(worker, client))
        await stop.wait()
        readiness.cancel()
    telemetry.stop()
    logger.info("Worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
