"""The Temporal worker: wires settings, the agents' brain and the executors to the task queue.

Run `python worker.py` against any Temporal (the dev server from `make dev`, or a cluster).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.agents import AgentActivities
from activities.artifacts import ArtifactStore
from activities.datasets import DatasetActivities
from activities.executors import ExecutionActivities
from activities.team import build_agents
from json_logging import configure_logging
from settings import Settings
from workflows.data_science_run import DataScienceRun

logger = logging.getLogger("orchestrator.worker")


def build_worker(client: Client, settings: Settings) -> Worker:
    store = ArtifactStore(settings.artifacts_dir)
    agents = AgentActivities(build_agents(settings), store)
    datasets = DatasetActivities(settings, store)
    executions = ExecutionActivities(settings, store)
    if swept := executions.sweep_stale_scratch():
        logger.info("Removed scratch folders of killed workers", extra={"folders": swept})
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[DataScienceRun],
        activities=[
            datasets.fetch_dataset,
            agents.research,
            agents.data_engineering,
            agents.ml,
            agents.critic,
            executions.execute_eda,
            executions.train_model,
        ],
        max_concurrent_activities=8,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


async def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    client = await connect(settings)
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
        await stop.wait()
    logger.info("Worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
