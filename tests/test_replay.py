"""Replay guards: a workflow change that would break runs already in flight fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.fake_team import FakeTeam
from tests.test_workflow_logic import awaiting, running, wait_for
from worker import workflow_runner
from workflows.contract import SIGNAL_APPROVE, SIGNAL_REJECT
from workflows.data_science_run import DataScienceRun
from workflows.event_delivery import DeliverRunEvent

HISTORIES = Path(__file__).parent / "histories"


def replayer() -> Replayer:
    # The worker's own sandbox settings, so replay sees what production runs see.
    return Replayer(
        workflows=[DataScienceRun, DeliverRunEvent],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


async def record_history(env: WorkflowEnvironment) -> WorkflowHistory:
    """A run through every branch: a rejection, an approval, a critic revision."""
    team = FakeTeam(verdicts=["revise", "accept"], scores=[0.7, 0.9])
    async with running(env, team, max_critic_rounds=1) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_REJECT, {"feedback": "drop the id column"})
        await wait_for(handle, awaiting(2))
        await handle.signal(SIGNAL_APPROVE)
        await handle.result()
        return await handle.fetch_history()


async def test_fresh_history_through_every_branch_replays(time_skipping_env):
    history = await record_history(time_skipping_env)
    await replayer().replay_workflow(history)


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.name)
async def test_recorded_histories_still_replay(path: Path):
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    await replayer().replay_workflow(history)


def test_at_least_one_recorded_history_is_kept():
    assert list(HISTORIES.glob("*.json")), "record one with: python -m tests.record_history"
