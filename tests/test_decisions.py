"""Approve and reject as Temporal updates: exactly one decision takes effect, and the run
records who decided what, when and on which code version."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from tests.fake_team import FakeTeam
from tests.test_workflow_logic import awaiting, final_error, running, state_of, wait_for
from workflows.contract import (
    SIGNAL_APPROVE,
    SIGNAL_CANCELLED_BY,
    UPDATE_APPROVE,
    UPDATE_REJECT,
    ErrorType,
)
from workflows.models import Decision, HumanApproval, RunStatus, RunStatusView, Step


async def _update(handle, name: str, decision: Decision) -> RunStatusView | str:
    """The update's answer, or the reason it was refused."""
    try:
        return await handle.execute_update(name, decision, result_type=RunStatusView)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == ErrorType.DECISION_REFUSED
        return cause.message


async def test_twenty_parallel_approvals_take_effect_exactly_once(time_skipping_env):
    async with running(time_skipping_env, FakeTeam()) as handle:
        await wait_for(handle, awaiting(1))
        answers = await asyncio.gather(
            *(_update(handle, UPDATE_APPROVE, Decision(by=f"user{i}")) for i in range(20))
        )
        accepted = [a for a in answers if isinstance(a, RunStatusView)]
        refused = [a for a in answers if isinstance(a, str)]
        assert len(accepted) == 1 and len(refused) == 19
        assert all("already taken" in reason for reason in refused)
        result = await handle.result()

    assert result.status == RunStatus.COMPLETED
    approvals = [e for e in result.audit if e.action == "approved"]
    assert len(approvals) == 1


async def test_approve_and_reject_together_one_wins_and_the_run_follows_it(time_skipping_env):
    team = FakeTeam()
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        approve, reject = await asyncio.gather(
            _update(handle, UPDATE_APPROVE, Decision(by="alice")),
            _update(handle, UPDATE_REJECT, Decision(by="bob", feedback="drop the id column")),
        )
        assert isinstance(approve, RunStatusView) != isinstance(reject, RunStatusView)
        if isinstance(reject, RunStatusView):
            state = await wait_for(handle, awaiting(2))
            assert state.rejection_count == 1
            assert team.calls.get("execute_eda") is None, "rejected code never runs"
        else:
            result = await handle.result()
            assert result.status == RunStatus.COMPLETED
            assert result.rejection_count == 0


async def test_a_decision_on_another_version_is_refused_with_the_reason(time_skipping_env):
    async with running(time_skipping_env, FakeTeam()) as handle:
        await wait_for(handle, awaiting(1))
        answer = await _update(handle, UPDATE_APPROVE, Decision(version=2))
        assert isinstance(answer, str) and "v1 is waiting, not v2" in answer
        state = await state_of(handle)
        assert state.status == RunStatus.AWAITING_APPROVAL
        assert [e.action for e in state.audit] == ["started"]


async def test_a_decision_when_not_waiting_is_refused(time_skipping_env):
    async with running(time_skipping_env, FakeTeam()) as handle:
        await wait_for(handle, awaiting(1))
        assert isinstance(await _update(handle, UPDATE_APPROVE, Decision()), RunStatusView)
        await handle.result()
        # A closed run takes no updates at all; Temporal itself refuses them.
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error type for a closed run varies
            await handle.execute_update(UPDATE_REJECT, Decision(), result_type=RunStatusView)


async def test_a_decision_delivered_after_its_sender_gave_up_does_not_count(time_skipping_env):
    async with running(time_skipping_env, FakeTeam()) as handle:
        await wait_for(handle, awaiting(1))
        expired = Decision(by="alice", expires_at=datetime.now(UTC) - timedelta(minutes=5))
        answer = await _update(handle, UPDATE_APPROVE, expired)
        assert isinstance(answer, str) and "stopped waiting" in answer
        assert (await state_of(handle)).human_approval == HumanApproval.PENDING


async def test_the_audit_trail_names_who_decided_on_which_version(time_skipping_env):
    async with running(time_skipping_env, FakeTeam()) as handle:
        await wait_for(handle, awaiting(1))
        rejected = await _update(
            handle,
            UPDATE_REJECT,
            Decision(by="bob", authenticated=True, version=1, feedback="drop the id column"),
        )
        assert isinstance(rejected, RunStatusView)
        assert rejected.human_approval == HumanApproval.REJECTED
        await wait_for(handle, awaiting(2))
        # An operator at the CLI says who they are; nothing vouches for it.
        await handle.signal(SIGNAL_APPROVE, {"by": "carol", "authenticated": True})
        result = await handle.result()

    rejection, approval = [e for e in result.audit if e.action != "started"]
    assert (rejection.by, rejection.authenticated, rejection.via) == ("bob", True, "api")
    assert (rejection.version, rejection.feedback) == (1, "drop the id column")
    assert (approval.by, approval.authenticated, approval.via) == ("carol", False, "signal")
    assert approval.version == 2
    assert any("by carol" in m.content for m in result.messages)


async def test_cancellation_records_who_asked(time_skipping_env):
    async with running(time_skipping_env, FakeTeam()) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_CANCELLED_BY, Decision(by="alice", authenticated=True))
        await handle.cancel()
        state = await wait_for(handle, lambda s: s.status == RunStatus.CANCELLED)

    entry = state.audit[-1]
    assert (entry.action, entry.by, entry.authenticated) == ("cancelled", "alice", True)
    assert state.last_error == "Cancelled by alice by request."


async def test_intake_is_its_own_step(time_skipping_env):
    async with running(time_skipping_env, FakeTeam()) as handle:
        state = await wait_for(handle, awaiting(1))
        history = await handle.fetch_history()

    assert state.dataset_info is not None
    upserts = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    steps = [fields["CurrentStep"].data for fields in upserts if "CurrentStep" in fields]
    assert steps[:2] == [b'"dataset_intake"', b'"research_agent"']
    assert Step.DATASET_INTAKE.value == "dataset_intake"


async def test_a_run_records_one_patch_marker_and_its_end_once(time_skipping_env):
    """What a run sends Temporal: one marker for every patch (each marker costs two events), and
    one status upsert as it ends, not a "running at complete" one just before it."""
    async with running(time_skipping_env, FakeTeam()) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        await handle.result()
        events = (await handle.fetch_history()).events

    markers = [e for e in events if e.HasField("marker_recorded_event_attributes")]
    assert len(markers) == 1
    last_step = max(
        i for i, e in enumerate(events) if e.HasField("activity_task_completed_event_attributes")
    )
    ending = [
        e for e in events[last_step:] if e.HasField("workflow_properties_modified_event_attributes")
    ]
    assert len(ending) == 1


async def test_a_run_whose_training_never_succeeded_fails_with_the_reason(time_skipping_env):
    team = FakeTeam(training_exit_code=1, verdicts=["revise", "revise"])
    async with running(time_skipping_env, team, max_critic_rounds=1) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        error = await final_error(handle)
        state = await state_of(handle)

    assert state.status == RunStatus.FAILED
    assert "Training never succeeded" in (state.last_error or "")
    assert "ValueError: Input contains NaN" in (state.last_error or "")
    assert error.type == ErrorType.STEP_FAILED


async def test_a_run_whose_eda_failed_fails_with_the_reason(time_skipping_env):
    team = FakeTeam(eda_exit_code=1)
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        await handle.signal(SIGNAL_APPROVE)
        await final_error(handle)
        state = await state_of(handle)

    assert state.status == RunStatus.FAILED
    assert state.last_error == ("The approved EDA code v1 failed: exit code 1, KeyError: 'gender'")
    assert team.calls.get("ml") is None


async def test_an_unsure_plan_cannot_be_approved_until_the_reviewer_names_the_target(
    time_skipping_env,
):
    team = FakeTeam(unsure_target=True)
    async with running(time_skipping_env, team) as handle:
        waiting = await wait_for(handle, awaiting(1))
        assert waiting.plan is not None and waiting.plan.needs_target_choice
        refused = await _update(handle, UPDATE_APPROVE, Decision(by="alice"))
        assert isinstance(refused, str) and "candidates: Churn, Contract" in refused

        unknown = await _update(handle, UPDATE_APPROVE, Decision(target="Nope"))
        assert isinstance(unknown, str) and "no column named 'Nope'" in unknown

        chosen = await _update(handle, UPDATE_APPROVE, Decision(by="alice", target="Contract"))
        assert isinstance(chosen, RunStatusView)
        replanned = await wait_for(handle, awaiting(2))
        assert replanned.plan is not None
        assert (replanned.plan.target, replanned.plan.chosen_by_reviewer) == ("Contract", True)
        assert not replanned.plan.needs_target_choice
        assert team.calls["research"] == 2
        assert team.contexts["research"][-1].target_choice == "Contract"
        assert team.calls.get("execute_eda") is None, "code for the old target never ran"
        assert replanned.audit[-1].action == "retargeted"

        await handle.signal(SIGNAL_APPROVE)
        result = await handle.result()

    assert result.status == RunStatus.COMPLETED
    assert result.rejection_count == 0
    assert team.contexts["ml"][-1].target_choice == "Contract"


async def test_approving_an_unsure_plan_with_its_own_target_settles_it(time_skipping_env):
    team = FakeTeam(unsure_target=True)
    async with running(time_skipping_env, team) as handle:
        await wait_for(handle, awaiting(1))
        answer = await _update(handle, UPDATE_APPROVE, Decision(by="alice", target="Churn"))
        assert isinstance(answer, RunStatusView)
        result = await handle.result()

    assert result.plan is not None
    assert (result.plan.needs_target_choice, result.plan.chosen_by_reviewer) == (False, True)
    assert result.plan.target_confidence == 1.0
    assert team.calls["research"] == 1, "the same target needs no new plan"
