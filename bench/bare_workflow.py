"""The engine's floor: a bare Temporal SDK workflow of the run's shape, and its worker.

Seven no-op activities (intake, research, data engineering, then after an approval update EDA
execution, ML, training and the critic); an approval gate with a timeout, which marks itself
open in a search attribute; a query to see that it is open, and an update, refused until then,
to pass it. No state model, no memo, the SDK's default worker options and data converter: what
any workflow of this shape costs on the same server.

    python -m bench.bare_workflow ADDRESS TASK_QUEUE     # its worker
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

BARE_WORKFLOW_TYPE = "BareRun"
STEPS_BEFORE_APPROVAL = ("fetch_dataset", "research_agent", "data_engineering_agent")
STEPS_AFTER_APPROVAL = ("execute_eda", "ml_agent", "train_model", "critic_agent")
# The one mark the bare run leaves: its gate is open. Like the service's runs, it can then be
# found waiting by describe and list, without asking a worker.
GATE_ATTRIBUTE = SearchAttributeKey.for_keyword("RunStatus")
GATE_OPEN = "awaiting_approval"


@activity.defn(name="bare_step")
async def bare_step(step: str) -> str:
    return step


@workflow.defn(name=BARE_WORKFLOW_TYPE)
class BareRun:
    def __init__(self) -> None:
        self._awaiting = False
        self._approved = False

    @workflow.run
    async def run(self, goal: str) -> str:
        for step in STEPS_BEFORE_APPROVAL:
            await self._step(step)
        self._awaiting = True
        workflow.upsert_search_attributes([GATE_ATTRIBUTE.value_set(GATE_OPEN)])
        await workflow.wait_condition(lambda: self._approved, timeout=timedelta(days=7))
        self._awaiting = False
        for step in STEPS_AFTER_APPROVAL:
            await self._step(step)
        return goal

    async def _step(self, step: str) -> None:
        await workflow.execute_activity(
            bare_step, step, start_to_close_timeout=timedelta(minutes=10)
        )

    @workflow.query
    def awaiting_approval(self) -> bool:
        return self._awaiting

    @workflow.update
    async def approve(self) -> bool:
        self._approved = True
        return True

    @approve.validator
    def _validate_approve(self) -> None:
        if not self._awaiting or self._approved:
            raise ApplicationError("not awaiting approval", non_retryable=True)


async def run_worker(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(client, task_queue=task_queue, workflows=[BareRun], activities=[bare_step])
    async with worker:
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(run_worker(sys.argv[1], sys.argv[2]))
