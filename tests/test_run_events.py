"""Webhook events from the run: sent when it awaits approval and when it ends, delivered apart
from it, so a receiver that is down never holds the run up."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.fake_team import FakeTeam
from tests.test_workflow_logic import awaiting, wait_for
from workflows.contract import SIGNAL_APPROVE, ActivityName
from workflows.data_science_run import DataScienceRun
from workflows.event_delivery import DeliverRunEvent
from workflows.models import RunEvent, RunInput, RunOptions


class Receiver:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.events: list[RunEvent] = []
        self.attempts = 0

    @activity.defn(name=ActivityName.NOTIFY)
    async def notify(self, event: RunEvent) -> list[str]:
        self.attempts += 1
        if self.down:
            raise ApplicationError("receiver is down")  # retryable, as the real activity raises
        self.events.append(event)
        return ["http://receiver"]


async def _run(env: WorkflowEnvironment, team: FakeTeam, receiver: Receiver, **options: object):
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[DataScienceRun, DeliverRunEvent],
        activities=[*(a for a in team.activities if a != team.notify), receiver.notify],
    ):
        handle = await env.client.start_workflow(
            DataScienceRun.run,
            RunInput(
                user_goal="Build a customer churn prediction model",
                dataset_url="https://example.com/churn.csv",
                options=RunOptions(notify=True, **options),  # type: ignore[arg-type]
            ),
            id=f"wf-{uuid.uuid4().hex[:12]}",
            task_queue=task_queue,
        )
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        try:
            result = await handle.result()
        except WorkflowFailureError:
            result = None
        for _ in range(100):  # the deliveries run on after the run has ended
            if len(receiver.events) >= 2 or receiver.down:
                break
            await asyncio.sleep(0.05)
        await _stop_deliveries(env, handle.id)
        return handle, result


async def _stop_deliveries(env: WorkflowEnvironment, workflow_id: str) -> None:
    """Deliveries to a receiver that is down retry for a day; left open, they would stall the
    shared time-skipping server for the tests that follow. The run starts at most three."""
    for n in (1, 2, 3):
        with contextlib.suppress(RPCError):
            await env.client.get_workflow_handle(f"{workflow_id}-event-{n}").terminate("test over")
