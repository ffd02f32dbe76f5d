"""The run's logic on the time-skipping test server, with scriptable activities."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.fake_team import FakeTeam
from workflows.contract import QUERY_STATE, SIGNAL_APPROVE, SIGNAL_REJECT, WORKFLOW_TYPE
from workflows.data_science_run import DataScienceRun
from workflows.event_delivery import DeliverRunEvent
from workflows.models import HumanApproval, RunInput, RunOptions, RunState, RunStatus, Step

RunHandle = WorkflowHandle[DataScienceRun, RunState]


@asynccontextmanager
async def running(
    env: WorkflowEnvironment,
    team: FakeTeam,
    workflow_id: str | None = None,
    **options: float | bool,
) -> AsyncIterator[RunHandle]:
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[DataScienceRun, DeliverRunEvent],
        activities=team.activities,
    ):
        handle = await env.client.start_workflow(
            DataScienceRun.run,
            RunInput(
                user_goal="Build a customer churn prediction model",
                dataset_url="https://example.com/churn.csv",
                options=RunOptions(**options),
            ),
            id=workflow_id or f"wf-{uuid.uuid4().hex[:12]}",
            task_queue=task_queue,
        )
        try:
            yield handle
        finally:
            # Leave no open run behind: its pending tasks would stall the shared test server's
            # time skipping for the tests that follow.
            await handle.cancel()
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()


async def state_of(handle: RunHandle) -> RunState:
    return await handle.query(QUERY_STATE, result_type=RunState)


async def wait_for(handle: RunHandle, ready: Callable[[RunState], bool]) -> RunState:
    for _ in range(200):
        state = await state_of(handle)
        if ready(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"run never reached the expected state; last: {state.status_view()}")


def awaiting(version_count: int) -> Callable[[RunState], bool]:
    """Awaiting approval of the given EDA code version."""

    def check(state: RunState) -> bool:
        code = state.code_context.eda_code
        return (
            state.status == RunStatus.AWAITING_APPROVAL
            and code is not None
            and code.version == version_count
        )

    return check


async def final_error(handle: RunHandle) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_approved_run_completes_with_every_step_done(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team) as handle:
        waiting = await wait_for(handle, awaiting(1))
        assert waiting.current_step == Step.HUMAN_APPROVAL
        assert team.calls.get("execute_eda") is None, "nothing executes before approval"
        await handle.signal(SIGNAL_APPROVE)
        result = await handle.result()

    assert result.status == RunStatus.COMPLETED
    assert result.current_step == Step.COMPLETE
    assert result.human_approval == HumanApproval.APPROVED
    assert result.research_plan == ["profile", "clean", "model", "evaluate", "report"]
    assert result.code_context.training_result is not None
    assert result.code_context.training_result.metrics["score"] == 0.9
    assert result.review is not None and result.review.verdict == "accept"
    assert result.usage_totals.calls == 4  # research, data engineering, ML, critic
    assert result.usage_totals.input_tokens == 40
    assert result.completed_at is not None
    assert [team.calls[k] for k in ("fetch_dataset", "execute_eda", "train_model")] == [1, 1, 1]


async def test_rejected_run_returns_to_data_engineering_with_feedback(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_REJECT, {"feedback": "drop the id column"})
        second = await wait_for(handle, awaiting(2))
        assert second.rejection_count == 1
        assert second.human_approval == HumanApproval.PENDING
        assert [f.text for f in second.review_feedback] == ["drop the id column"]
        regenerated_with = team.contexts["data_engineering"][-1]
        assert regenerated_with.feedback[0].text == "drop the id column"
        assert regenerated_with.feedback[0].source == "human"
        await handle.signal(SIGNAL_APPROVE)
        result = await handle.result()

    assert result.status == RunStatus.COMPLETED
    assert team.calls["data_engineering"] == 2
    assert result.status_view().feedback_count == 2  # the human's, then the critic's review


async def test_reject_accepts_a_bare_string_as_the_cli_sends_it(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_REJECT, "use median imputation")
        state = await wait_for(handle, awaiting(2))
        assert state.review_feedback[0].text == "use median imputation"
        await handle.signal(SIGNAL_REJECT)  # no input at all
        state = await wait_for(handle, awaiting(3))
        assert state.rejection_count == 2
        assert "without comment" in state.review_feedback[1].text
        await handle.cancel()


async def test_a_decision_on_a_version_no_longer_waiting_is_ignored(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_REJECT, {"feedback": "drop the id column", "version": 1})
        await wait_for(handle, awaiting(2))
        await handle.signal(SIGNAL_APPROVE, {"version": 1})  # a reviewer still looking at v1
        state = await wait_for(handle, lambda s: any("not v1" in m.content for m in s.messages))
        assert state.status == RunStatus.AWAITING_APPROVAL
        assert state.human_approval == HumanApproval.PENDING
        await handle.signal(SIGNAL_APPROVE, {"version": 2})
        result = await handle.result()

    assert result.status == RunStatus.COMPLETED
    assert team.calls["execute_eda"] == 1


async def test_approval_timeout_ends_the_run_as_timed_out(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team, approval_timeout_seconds=3600) as handle:
        error = await final_error(handle)  # the test server skips the hour
        state = await state_of(handle)

    assert error.type == "ApprovalTimedOut"
    assert state.status == RunStatus.TIMED_OUT
    assert "3600" in (state.last_error or "")
    assert team.calls.get("execute_eda") is None


async def test_rejection_limit_ends_the_run_clearly(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team, max_rejections=1) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_REJECT, "no")
        await wait_for(handle, awaiting(2))
        await handle.signal(SIGNAL_REJECT, "still no")
        error = await final_error(handle)
        state = await state_of(handle)

    assert error.type == "RejectionLimitReached"
    assert state.status == RunStatus.FAILED
    assert "rejected 2 times" in (state.last_error or "")
    assert team.calls["data_engineering"] == 2


async def test_transient_activity_failure_is_retried_then_succeeds(time_skipping_env):
    team = FakeTeam(research_failures=2)
    async with running(time_skipping_env, team) as handle:
        state = await wait_for(handle, awaiting(1))
        await handle.cancel()

    assert team.calls["research"] == 3
    assert state.plan is not None and state.last_error is None


async def test_non_retryable_failure_fails_the_run_with_the_agents_message(time_skipping_env):
    team = FakeTeam(research_fatal=True)
    async with running(time_skipping_env, team) as handle:
        error = await final_error(handle)
        state = await state_of(handle)

    assert team.calls["research"] == 1, "a bad key is not retried"
    assert error.type == "StepFailed"
    assert state.status == RunStatus.FAILED
    assert state.current_step == Step.RESEARCH
    assert state.last_error == (
        "research_agent failed: OpenAI rejected the API key (401): check OPENAI_API_KEY"
    )
    assert state.usage_totals.calls == 1, "tokens spent on a failed call are still counted"
    assert state.usage_totals.input_tokens == 10


async def test_critic_revise_loops_back_to_ml_and_keeps_the_best_result(time_skipping_env):
    team = FakeTeam(verdicts=["revise", "revise", "revise"], scores=[0.8, 0.95, 0.7])
    async with running(time_skipping_env, team, max_critic_rounds=2) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        result = await handle.result()

    assert team.calls["ml"] == 3, "one first attempt plus two revision rounds"
    second_ml_context = team.contexts["ml"][1]
    assert any(
        f.source == "critic" and "class_weight" in f.text for f in second_ml_context.feedback
    )
    assert result.status == RunStatus.COMPLETED
    assert result.critic_rounds == 2
    best = result.code_context.training_result
    assert best is not None and best.metrics["score"] == 0.95
    assert best.metrics["version"] == 2
    kept_code = result.code_context.training_code
    assert kept_code is not None and kept_code.version == 2, "code, result and review stay together"
    assert result.review is not None and result.review.summary == "verdict revise"
    assert any("Kept training v2" in m.content for m in result.messages)


async def test_a_failed_revision_keeps_the_earlier_result_and_completes(time_skipping_env):
    team = FakeTeam(verdicts=["revise"], scores=[0.8], training_fails_from=2)
    async with running(time_skipping_env, team, max_critic_rounds=2) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        result = await handle.result()

    assert team.calls["train_model"] == 2, "a limit is not retried"
    assert result.status == RunStatus.COMPLETED
    assert result.last_error is None
    kept = result.code_context.training_result
    assert kept is not None and kept.metrics["score"] == 0.8
    assert result.code_context.training_code is not None
    assert result.code_context.training_code.version == 1
    assert any(
        "Revision v2 failed" in m.content and "memory limit" in m.content for m in result.messages
    )


async def test_a_failed_first_training_fails_the_run(time_skipping_env):
    team = FakeTeam(training_fails_from=1)
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        error = await final_error(handle)
        state = await state_of(handle)

    assert error.type == "StepFailed"
    assert state.status == RunStatus.FAILED
    assert state.last_error == "ml_worker failed: the code exceeded the 2048 MB memory limit"


async def test_signals_outside_the_approval_step_are_ignored(time_skipping_env):
    team = FakeTeam(verdicts=["accept"])
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        await handle.signal(SIGNAL_REJECT, "too late")  # arrives after the decision
        result = await handle.result()

    assert result.status == RunStatus.COMPLETED
    assert result.rejection_count == 0
    assert any("Ignored reject signal" in m.content for m in result.messages)


async def test_cancelled_run_records_cancelled(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state = await state_of(handle)

    assert state.status == RunStatus.CANCELLED
    assert state.completed_at is not None


def test_workflow_type_name_is_stable():
    # Renaming the type orphans every run in flight and breaks operators' CLI commands.
    assert WORKFLOW_TYPE == "DataScienceRun"
