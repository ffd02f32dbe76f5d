"""Webhook events from the run: sent when it awaits approval and when it ends, delivered apart
from it, so a receiver that is down never holds the run up."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.fake_team import FakeTeam
from tests.test_workflow_logic import awaiting, wait_for
from workflows.contract import SIGNAL_APPROVE, ActivityName
from workflows.data_science_run import DataScienceRun
from workflows.event_delivery import DeliverRunEvent
from workflows.models import RunEvent, RunInput, RunOptions, RunStatus


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
        return handle, result


async def test_events_for_awaiting_approval_and_completion_reach_the_receiver(time_skipping_env):
    receiver = Receiver()
    handle, result = await _run(time_skipping_env, FakeTeam(), receiver)

    assert result is not None and result.status == RunStatus.COMPLETED
    kinds = [e.kind for e in receiver.events]
    assert kinds == ["awaiting_approval", "completed"]
    waiting = receiver.events[0]
    assert waiting.workflow_id == handle.id and waiting.version == 1
    assert "example.com" not in waiting.model_dump_json(), "the dataset URL is never sent"


async def test_a_failed_run_sends_failed_with_the_reason(time_skipping_env):
    receiver = Receiver()
    _, result = await _run(time_skipping_env, FakeTeam(training_fails_from=1), receiver)

    assert result is None
    failed = receiver.events[-1]
    assert failed.kind == "failed" and "memory limit" in failed.message


async def test_a_receiver_that_is_down_never_holds_up_the_run(time_skipping_env):
    receiver = Receiver(down=True)
    handle, result = await _run(time_skipping_env, FakeTeam(), receiver)

    assert result is not None and result.status == RunStatus.COMPLETED
    assert receiver.events == []
    children = [
        e
        for e in (await handle.fetch_history()).events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert len(children) == 2
