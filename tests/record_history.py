"""Records histories into tests/histories/ for the replay test: `python -m tests.record_history`.

One history for each way a run can end. Record new ones when the workflow changes on purpose,
and keep the old ones: they stand for runs that may still be in flight somewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from datetime import date

from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEST_SERVER, register_search_attributes
from tests.fake_team import FakeTeam
from tests.test_replay import HISTORIES, record_history
from tests.test_workflow_logic import RunHandle, awaiting, running, wait_for
from workflows.contract import SIGNAL_APPROVE, SIGNAL_REJECT, UPDATE_APPROVE
from workflows.models import Decision, RunStatusView

Drive = Callable[[RunHandle], Awaitable[None]]


async def _approve(handle: RunHandle) -> None:
    await wait_for(handle, awaiting(1))
    await handle.signal(SIGNAL_APPROVE)


async def _time_out(handle: RunHandle) -> None:
    await wait_for(handle, awaiting(1))


async def _reject_twice(handle: RunHandle) -> None:
    await wait_for(handle, awaiting(1))
    await handle.signal(SIGNAL_REJECT, {"feedback": "drop the id column"})
    await wait_for(handle, awaiting(2))
    await handle.signal(SIGNAL_REJECT, "still wrong")


async def _approve_by_update(handle: RunHandle) -> None:
    await wait_for(handle, awaiting(1))
    await handle.execute_update(
        UPDATE_APPROVE,
        Decision(by="alice", authenticated=True, version=1),
        result_type=RunStatusView,
    )


async def _choose_target(handle: RunHandle) -> None:
    await wait_for(handle, awaiting(1))
    await handle.execute_update(
        UPDATE_APPROVE, Decision(by="alice", target="Contract"), result_type=RunStatusView
    )
    await wait_for(handle, awaiting(2))
    await handle.execute_update(UPDATE_APPROVE, Decision(by="alice"), result_type=RunStatusView)


async def _cancel(handle: RunHandle) -> None:
    await wait_for(handle, awaiting(1))
    await handle.cancel()


# name → (team, run options, how the test drives it)
ENDINGS: dict[str, tuple[FakeTeam, dict[str, float | bool], Drive]] = {
    "completed": (FakeTeam(), {}, _approve),
    "approval-timeout": (FakeTeam(), {"approval_timeout_seconds": 3600}, _time_out),
    "rejection-limit": (FakeTeam(), {"max_rejections": 1}, _reject_twice),
    "cancelled": (FakeTeam(), {}, _cancel),
    "failed": (FakeTeam(training_fails_from=1), {}, _approve),
    "approved-by-update": (FakeTeam(), {}, _approve_by_update),
    "target-chosen": (FakeTeam(unsure_target=True), {}, _choose_target),
    "training-never-succeeded": (FakeTeam(training_exit_code=1), {}, _approve),
    "notified": (FakeTeam(), {"notify": True}, _approve),
}


async def record_ending(
    env: WorkflowEnvironment,
    team: FakeTeam,
    options: dict[str, float | bool],
    drive: Drive,
    workflow_id: str,
) -> WorkflowHistory:
    # The replay test names each run after its file, and ids derived from it (child runs)
    # must match, so the recorded run carries that name from the start.
    async with running(env, team, workflow_id, **options) as handle:
        await drive(handle)
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
        return await handle.fetch_history()


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    today = f"{date.today():%Y%m%d}"
    try:
        await register_search_attributes(env.client)
        histories = {"reject-approve-revise": await record_history(env)}
        for name, (team, options, drive) in ENDINGS.items():
            histories[name] = await record_ending(env, team, options, drive, f"wf-{today}-{name}")
        for name, history in histories.items():
            path = HISTORIES / f"wf-{today}-{name}.json"
            path.write_text(history.to_json())
            print(f"recorded {path}", file=sys.stderr)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
