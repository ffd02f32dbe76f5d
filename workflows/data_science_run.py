"""The durable data-science run: agents in sequence, a human approval gate, a critic loop.

Deterministic code only: time comes from `workflow.now()`, all I/O happens in activities that
are called by name, so this module imports nothing that touches the outside world.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

from workflows import run_metrics
from workflows.contract import (
    ACTIVITY_TIMEOUTS,
    CURRENT_STEP_ATTRIBUTE,
    DELIVER_EVENT_WORKFLOW_TYPE,
    QUERY_STATE,
    QUERY_STATUS,
    RUN_STATUS_ATTRIBUTE,
    SIGNAL_APPROVE,
    SIGNAL_CANCELLED_BY,
    SIGNAL_REJECT,
    UPDATE_APPROVE,
    UPDATE_REJECT,
    WORKFLOW_TYPE,
    ActivityName,
    ErrorType,
    retry_policy,
)
from workflows.models import (
    AgentContext,
    AuditEntry,
    CodeOutcome,
    DatasetInfo,
    DatasetRequest,
    Decision,
    ExecutionRequest,
    ExecutionResult,
    Feedback,
    GeneratedCode,
    HumanApproval,
    LlmUsage,
    Message,
    ResearchOutcome,
    Review,
    ReviewOutcome,
    RunEvent,
    RunEventKind,
    RunInput,
    RunState,
    RunStatus,
    RunStatusView,
    Step,
)
from workflows.redaction import redact_dataset_url
from workflows.scoring import is_better

# Changes to the command sequence, each behind workflow.patched so runs recorded before them
# (tests/histories/) replay unchanged. Remove a branch only when no such run can be in flight.
PATCH_INTAKE_STEP = "dataset-intake-step"  # intake is its own step, entered before research
PATCH_HONEST_OUTCOMES = "honest-outcomes"  # EDA or training that never succeeded fails the run
PATCH_STATUS_IN_MEMO = "status-in-memo"  # the status document rides in the memo at every step
PATCH_WEBHOOKS = "webhooks"  # runs started with notify tell WEBHOOK_URLS through a child run
PATCH_REVIEWER_TARGET = "reviewer-target"  # a decision naming a target re-plans the run
# Every patch above, in one marker: a run from here on records this one alone (each marker also
# upserts TemporalChangeVersion, two events a patch), and upserts its status once as it ends.
PATCH_ONE_MARKER = "one-marker"

# The memo key holding the run's status document: Temporal serves it with describe and list,
# so status reads need no worker.
STATUS_MEMO_KEY = "status"

ResultT = TypeVar("ResultT", bound=BaseModel)


@dataclass(frozen=True)
class TrainingRound:
    version: int
    code: GeneratedCode
    result: ExecutionResult
    review: Review


class RunEnded(Exception):
    """Ends the run early with a final status and a message for the operator."""

    def __init__(self, status: RunStatus, message: str, error_type: ErrorType) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


def _read_signal_decision(payload: Any) -> Decision:
    """A decision from whatever an operator can type into `temporal workflow signal --input`:
    nothing, a bare string, or a JSON object. A name given as `by` is recorded as given,
    never as authenticated: nothing vouched for it."""
    if payload is None:
        return Decision()
    if isinstance(payload, str):
        return Decision(feedback=payload.strip()[:4000] or None)
    if isinstance(payload, dict):
        text = payload.get("feedback") or payload.get("comment")
        version = payload.get("version")
        by = payload.get("by")
        return Decision(
            by=str(by)[:200] if by else None,
            feedback=(str(text).strip()[:4000] or None) if text else None,
            version=version
            if isinstance(version, int) and version >= 1 and version is not True
            else None,
        )
    return Decision(feedback=str(payload)[:4000])


@workflow.defn(name=WORKFLOW_TYPE)
class DataScienceRun:
    @workflow.init
    def __init__(self, run_input: RunInput) -> None:
        # Built here, not in run(), so queries answer from the very first workflow task.
        now = workflow.now()
        self._state = RunState(
            workflow_id=workflow.info().workflow_id,
            user_goal=run_input.user_goal,
            # Only intake sees the URL as given: it may carry credentials.
            dataset_url=redact_dataset_url(run_input.dataset_url),
            owner=run_input.owner,
            audit=[
                AuditEntry(
                    action="started",
                    by=run_input.owner,
                    authenticated=run_input.owner_authenticated,
                    via="api" if run_input.owner_authenticated else "temporal",
                    at=now,
                )
            ],
            created_at=now,
            updated_at=now,
        )
        self._dataset_url = run_input.dataset_url
        self._decision: tuple[HumanApproval, Decision] | None = None
        self._cancelled_by: Decision | None = None
        self._notify = run_input.options.notify
        self._target_choice: str | None = None
        self._events_sent = 0

    # --- Handlers -----------------------------------------------------------------------------

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> RunStatusView:
        return self._state.status_view()

    @workflow.query(name=QUERY_STATE)
    def state(self) -> RunState:
        return self._state

    @workflow.signal(name=SIGNAL_APPROVE)
    def approve_signal(self, payload: Any = None) -> None:
        self._decide_by_signal(HumanApproval.APPROVED, _read_signal_decision(payload))

    @workflow.signal(name=SIGNAL_REJECT)
    def reject_signal(self, payload: Any = None) -> None:
        self._decide_by_signal(HumanApproval.REJECTED, _read_signal_decision(payload))

    # The updates answer their caller: accepted with the run's new status, or refused with the
    # reason. The handlers finish without awaiting, so of two racing decisions the second one's
    # validator already sees the first: exactly one takes effect.
    @workflow.update(name=UPDATE_APPROVE)
    async def approve_update(self, decision: Decision) -> RunStatusView:
        return self._decide_by_update(HumanApproval.APPROVED, decision)

    @approve_update.validator
    def _validate_approve(self, decision: Decision) -> None:
        self._raise_if_refused(HumanApproval.APPROVED, decision)

    @workflow.update(name=UPDATE_REJECT)
    async def reject_update(self, decision: Decision) -> RunStatusView:
        return self._decide_by_update(HumanApproval.REJECTED, decision)

    @reject_update.validator
    def _validate_reject(self, decision: Decision) -> None:
        self._raise_if_refused(HumanApproval.REJECTED, decision)

    @workflow.signal(name=SIGNAL_CANCELLED_BY)
    def cancelled_by(self, decision: Decision) -> None:
        """Who asked for the cancellation that follows; Temporal's cancel carries no name."""
        self._cancelled_by = decision

    def _refusal(self, decision: HumanApproval, request: Decision) -> str | None:
        """Why this decision cannot take effect now, or None when it can."""
        state = self._state
        if state.status != RunStatus.AWAITING_APPROVAL or self._decision is not None:
            if self._decision is not None:
                taken = self._decision[0].value.lower()
                return f"another decision ({taken}) was already taken on this version"
            return (
                f"the run is {state.status.value} at {state.current_step.value}, "
                "not awaiting approval"
            )
        current = state.code_context.eda_code.version if state.code_context.eda_code else None
        if request.version is not None and request.version != current:
            # The reviewer saw another version than the one now waiting: never approve unseen code.
            return f"EDA code v{current} is waiting, not v{request.version}; review v{current}"
        if request.expires_at is not None and workflow.now() > request.expires_at:
            return "the decision arrived after its sender stopped waiting for it"
        if request.target is not None and state.dataset_info is not None:
            if state.dataset_info.profile.column(request.target) is None:
                return f"the dataset has no column named {request.target!r}"
        plan = state.plan
        if (
            decision == HumanApproval.APPROVED
            and plan is not None
            and plan.needs_target_choice
            and request.target is None
        ):
            candidates = ", ".join([plan.target, *plan.target_candidates])
            return (
                "the plan is unsure which column to predict; approve with a `target` "
                f"(candidates: {candidates})"
            )
        return None

    def _raise_if_refused(self, decision: HumanApproval, request: Decision) -> None:
        if (reason := self._refusal(decision, request)) is not None:
            raise ApplicationError(
                f"Cannot {_VERB[decision]} run {self._state.workflow_id}: {reason}.",
                type=ErrorType.DECISION_REFUSED,
                non_retryable=True,
            )

    def _decide_by_update(self, decision: HumanApproval, request: Decision) -> RunStatusView:
        self._raise_if_refused(decision, request)  # the validator ran, but may be skipped on replay
        self._take(decision, request, via="api" if request.authenticated else "update")
        return self._state.status_view()

    def _decide_by_signal(self, decision: HumanApproval, request: Decision) -> None:
        if (reason := self._refusal(decision, request)) is not None:
            # A signal has nobody to answer; a stray one is noted where operators look.
            self._say("system", f"Ignored {_VERB[decision]} signal: {reason}.")
            return
        self._take(decision, request.model_copy(update={"authenticated": False}), via="signal")

    def _take(self, decision: HumanApproval, request: Decision, via: str) -> None:
        state = self._state
        self._decision = (decision, request)
        state.human_approval = decision
        retarget = request.target is not None and (
            state.plan is None or request.target != state.plan.target
        )
        state.audit.append(
            AuditEntry(
                action="retargeted"
                if retarget
                else "approved"
                if decision == HumanApproval.APPROVED
                else "rejected",
                by=request.by,
                authenticated=request.authenticated,
                via=via,  # type: ignore[arg-type]
                at=workflow.now(),
                version=state.code_context.eda_code.version
                if state.code_context.eda_code
                else None,
                feedback=request.feedback,
            )
        )

    # --- The run ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, run_input: RunInput) -> RunState:
        run_metrics.record_run_started()
        try:
            await self._run_steps(run_input)
        except BaseException as err:
            # Record why the run ended, then fail the workflow so the Web UI shows it too.
            if is_cancelled_exception(err):
                self._record_cancellation()
                raise
            if isinstance(err, RunEnded):
                self._finish(err.status, err.message)
                kind: RunEventKind = "timed_out" if err.status == RunStatus.TIMED_OUT else "failed"
                await self._tell(kind, err.message)
                raise ApplicationError(
                    err.message, type=err.error_type, non_retryable=True
                ) from None
            if isinstance(err, ActivityError):
                self._record_failed_usage(err)
                message = self._activity_failure_message(err)
                self._finish(RunStatus.FAILED, message)
                await self._tell("failed", message)
                raise ApplicationError(
                    message, type=ErrorType.STEP_FAILED, non_retryable=True
                ) from None
            raise
        self._finish(RunStatus.COMPLETED, None)
        await self._tell("completed", self._state.review.summary if self._state.review else "")
        return self._state

    async def _run_steps(self, run_input: RunInput) -> None:
        options = run_input.options
        state = self._state

        intake_step = self._patched(PATCH_INTAKE_STEP)
        self._enter(Step.DATASET_INTAKE if intake_step else Step.RESEARCH, RunStatus.RUNNING)
        dataset = await self._call(
            ActivityName.FETCH_DATASET,
            DatasetRequest(
                workflow_id=state.workflow_id,
                dataset_url=self._dataset_url,
                user_goal=state.user_goal,
            ),
            DatasetInfo,
        )
        state.dataset_info = dataset
        if intake_step:
            self._enter(Step.RESEARCH, RunStatus.RUNNING)
        research = await self._call(ActivityName.RESEARCH, self._context(), ResearchOutcome)
        self._record_usage(research.usage)
        state.plan = research.plan
        state.research_plan = list(research.plan.steps)
        self._say(
            "agent",
            f"Research plan with {len(research.plan.steps)} steps: predict "
            f"{research.plan.target} ({research.plan.task_type}).",
        )

        await self._engineer_until_approved(
            options.approval_timeout_seconds, options.max_rejections
        )

        eda_code = state.code_context.eda_code
        assert eda_code is not None
        self._enter(Step.BROWSER_AGENT, RunStatus.RUNNING)
        state.code_context.eda_result = await self._execute(
            ActivityName.EXECUTE_EDA, Step.BROWSER_AGENT, eda_code.code, eda_code.version
        )
        eda_result = state.code_context.eda_result
        self._say("agent", f"EDA code ran (exit code {eda_result.exit_code}).")
        if not eda_result.succeeded and self._patched(PATCH_HONEST_OUTCOMES):
            raise RunEnded(
                RunStatus.FAILED,
                f"The approved EDA code v{eda_code.version} failed: {_failure_detail(eda_result)}",
                ErrorType.STEP_FAILED,
            )

        await self._train_until_accepted(options.max_critic_rounds)
        if not workflow.patched(PATCH_ONE_MARKER):
            self._enter(Step.COMPLETE, RunStatus.RUNNING)  # _finish enters it again at once

    async def _engineer_until_approved(self, timeout_seconds: float, max_rejections: int) -> None:
        state = self._state
        version = 0
        while True:
            version += 1
            self._enter(Step.DATA_ENGINEERING, RunStatus.RUNNING)
            outcome = await self._call(
                ActivityName.DATA_ENGINEERING, self._context(version), CodeOutcome
            )
            self._record_usage(outcome.usage)
            outcome.code.version = version
            state.code_context.eda_code = outcome.code
            self._say("agent", f"EDA code v{version} ready for review: {outcome.code.summary}")

            decision, request = await self._await_decision(timeout_seconds)
            text, who = request.feedback, f" by {request.by}" if request.by else ""
            if self._retargets(request) and self._patched(PATCH_REVIEWER_TARGET):
                # Code written for another column is never run: re-plan, then review again.
                await self._replan_for(request, who)
                continue
            if decision == HumanApproval.APPROVED:
                self._confirm_target(request)
                self._say(
                    "human", f"Approved EDA code v{version}{who}." + (f" {text}" if text else "")
                )
                return
            state.rejection_count += 1
            feedback = text or "Rejected without comment; revise the EDA code."
            state.review_feedback.append(
                Feedback(
                    source="human",
                    text=feedback,
                    step=Step.DATA_ENGINEERING,
                    at=workflow.now(),
                    on_version=version,
                )
            )
            self._say("human", f"Rejected EDA code v{version}{who}: {feedback}")
            if state.rejection_count > max_rejections:
                raise RunEnded(
                    RunStatus.FAILED,
                    f"The EDA code was rejected {state.rejection_count} times; the limit is "
                    f"{max_rejections} (MAX_REJECTIONS). Start a new run with a refined goal.",
                    ErrorType.REJECTION_LIMIT_REACHED,
                )

    def _confirm_target(self, request: Decision) -> None:
        """An unsure plan approved with the target it already names: the reviewer settled it."""
        plan = self._state.plan
        if plan is not None and request.target is not None and request.target == plan.target:
            self._state.plan = plan.model_copy(
                update={
                    "needs_target_choice": False,
                    "chosen_by_reviewer": True,
                    "target_confidence": 1.0,
                }
            )

    def _retargets(self, request: Decision) -> bool:
        plan = self._state.plan
        return request.target is not None and (plan is None or request.target != plan.target)

    async def _replan_for(self, request: Decision, who: str) -> None:
        state = self._state
        assert request.target is not None
        self._target_choice = request.target
        previous = state.plan.target if state.plan else None
        state.review_feedback.append(
            Feedback(
                source="human",
                text=f"Predict {request.target!r} instead of {previous!r}."
                + (f" {request.feedback}" if request.feedback else ""),
                step=Step.RESEARCH,
                at=workflow.now(),
                on_version=state.code_context.eda_code.version
                if state.code_context.eda_code
                else None,
            )
        )
        self._say("human", f"Chose target {request.target!r}{who}; re-planning.")
        self._enter(Step.RESEARCH, RunStatus.RUNNING)
        research = await self._call(ActivityName.RESEARCH, self._context(), ResearchOutcome)
        self._record_usage(research.usage)
        state.plan = research.plan
        state.research_plan = list(research.plan.steps)
        if state.dataset_info is not None:
            # The profile shown with the plan describes the new target (its class balance).
            state.dataset_info.profile = state.dataset_info.profile.for_plan(research.plan)
        self._say(
            "agent",
            f"Re-planned: predict {research.plan.target} ({research.plan.task_type}), "
            f"{len(research.plan.features)} features.",
        )

    async def _await_decision(self, timeout_seconds: float) -> tuple[HumanApproval, Decision]:
        state = self._state
        self._decision = None
        state.human_approval = HumanApproval.PENDING
        self._enter(Step.HUMAN_APPROVAL, RunStatus.AWAITING_APPROVAL)
        eda_code = state.code_context.eda_code
        await self._tell(
            "awaiting_approval",
            eda_code.summary if eda_code else "",
            eda_code.version if eda_code else None,
        )
        waiting_since = workflow.now()
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None, timeout=timedelta(seconds=timeout_seconds)
            )
        except TimeoutError:
            run_metrics.record_approval_wait(workflow.now() - waiting_since, None)
            raise RunEnded(
                RunStatus.TIMED_OUT,
                f"No approval arrived within {timeout_seconds:g} s (APPROVAL_TIMEOUT_SECONDS); "
                "the run stopped waiting. Start a new run to try again.",
                ErrorType.APPROVAL_TIMED_OUT,
            ) from None
        assert self._decision is not None
        run_metrics.record_approval_wait(workflow.now() - waiting_since, self._decision[0])
        state.human_approval = self._decision[0]
        return self._decision

    async def _train_until_accepted(self, max_critic_rounds: int) -> None:
        """ML → train → Critic, revised while the critic asks, then the best round is kept."""
        state = self._state
        best: TrainingRound | None = None
        version = 0
        while True:
            version += 1
            try:
                latest = await self._training_round(version)
            except ActivityError as err:
                if best is None or is_cancelled_exception(err):
                    raise
                self._record_failed_usage(err)
                # A revision that fails must not cost the result already in hand.
                self._say(
                    "system",
                    f"Revision v{version} failed ({self._activity_failure_message(err)}); "
                    f"keeping v{best.version}.",
                )
                break
            if best is None or is_better(latest.result, best.result):
                best = latest
            if latest.review.verdict == "accept" or state.critic_rounds >= max_critic_rounds:
                break
            state.critic_rounds += 1
        if best.version != version:
            self._say("system", f"Kept training v{best.version}, the best result of the rounds.")
        state.code_context.training_code = best.code
        state.code_context.training_result = best.result
        state.review = best.review
        if not best.result.succeeded and self._patched(PATCH_HONEST_OUTCOMES):
            # A run without a model never reports completed.
            raise RunEnded(
                RunStatus.FAILED,
                f"Training never succeeded; the last attempt (v{best.version}) failed: "
                f"{_failure_detail(best.result)}",
                ErrorType.STEP_FAILED,
            )

    async def _training_round(self, version: int) -> TrainingRound:
        state = self._state
        self._enter(Step.ML, RunStatus.RUNNING)
        outcome = await self._call(ActivityName.ML, self._context(version), CodeOutcome)
        self._record_usage(outcome.usage)
        outcome.code.version = version
        state.code_context.training_code = outcome.code

        self._enter(Step.ML_WORKER, RunStatus.RUNNING)
        result = await self._execute(
            ActivityName.TRAIN_MODEL, Step.ML_WORKER, outcome.code.code, version
        )
        state.code_context.training_result = result
        self._say("agent", f"Training v{version} finished with exit code {result.exit_code}.")

        self._enter(Step.CRITIC, RunStatus.RUNNING)
        review = await self._call(ActivityName.CRITIC, self._context(version), ReviewOutcome)
        self._record_usage(review.usage)
        state.review = review.review
        state.review_feedback.append(
            Feedback(
                source="critic",
                text=_review_text(review),
                step=Step.CRITIC,
                at=workflow.now(),
                findings=review.review.findings,  # as data: agents never parse the prose
            )
        )
        self._say("agent", f"Critic verdict on v{version}: {review.review.verdict}.")
        return TrainingRound(version, outcome.code, result, review.review)

    # --- Helpers ------------------------------------------------------------------------------

    def _patched(self, patch_id: str) -> bool:
        """`workflow.patched`, where PATCH_ONE_MARKER stands for every patch before it. Runs
        recorded without it ask each patch where they always did, so they replay unchanged.
        The SDK keeps each patch's first answer for the rest of the run."""
        return workflow.patched(PATCH_ONE_MARKER) or workflow.patched(patch_id)

    def _context(self, version: int = 1) -> AgentContext:
        state = self._state
        assert state.dataset_info is not None
        return AgentContext(
            workflow_id=state.workflow_id,
            user_goal=state.user_goal,
            dataset=state.dataset_info,
            plan=state.plan,
            feedback=list(state.review_feedback),
            eda_code=state.code_context.eda_code,
            eda_result=state.code_context.eda_result,
            training_code=state.code_context.training_code,
            training_result=state.code_context.training_result,
            version=version,
            target_choice=self._target_choice,
        )

    async def _call(
        self, name: ActivityName, arg: BaseModel, result_type: type[ResultT]
    ) -> ResultT:
        start_to_close, heartbeat, attempts = ACTIVITY_TIMEOUTS[name]
        return await workflow.execute_activity(
            name.value,
            arg,
            result_type=result_type,
            start_to_close_timeout=start_to_close,
            heartbeat_timeout=heartbeat,
            retry_policy=retry_policy(attempts),
        )

    async def _execute(
        self, name: ActivityName, step: Step, code: str, version: int
    ) -> ExecutionResult:
        state = self._state
        assert state.dataset_info is not None
        request = ExecutionRequest(
            workflow_id=state.workflow_id,
            step=step,
            version=version,
            code=code,
            dataset_path=state.dataset_info.file_path,
            # Where any worker finds it without a shared disk, and the checksum its copy must have.
            dataset_key=state.dataset_info.storage_key,
            dataset_sha256=state.dataset_info.sha256,
        )
        return await self._call(name, request, ExecutionResult)

    def _enter(self, step: Step, status: RunStatus) -> None:
        state = self._state
        state.current_step = step
        state.status = status
        state.next_step = _NEXT_STEP.get(step)
        state.updated_at = workflow.now()
        workflow.upsert_search_attributes(
            [
                RUN_STATUS_ATTRIBUTE.value_set(status.value),
                CURRENT_STEP_ATTRIBUTE.value_set(step.value),
            ]
        )
        if self._patched(PATCH_STATUS_IN_MEMO):
            workflow.upsert_memo({STATUS_MEMO_KEY: state.status_view().model_dump(mode="json")})

    def _finish(self, status: RunStatus, error: str | None) -> None:
        state = self._state
        state.last_error = error
        state.completed_at = workflow.now()
        run_metrics.record_run_finished(status)
        self._enter(state.current_step if status != RunStatus.COMPLETED else Step.COMPLETE, status)
        state.next_step = None
        self._say("system", f"Run {status.value}." + (f" {error}" if error else ""))

    async def _tell(self, kind: RunEventKind, message: str, version: int | None = None) -> None:
        """Start the webhook delivery for this event and go on without waiting for it."""
        if not self._notify or not self._patched(PATCH_WEBHOOKS):
            return
        self._events_sent += 1
        await workflow.start_child_workflow(
            DELIVER_EVENT_WORKFLOW_TYPE,
            RunEvent.about(self._state, kind, message, version),
            id=f"{self._state.workflow_id}-event-{self._events_sent}",
            parent_close_policy=ParentClosePolicy.ABANDON,
        )

    def _record_cancellation(self) -> None:
        request = self._cancelled_by or Decision()
        self._state.audit.append(
            AuditEntry(
                action="cancelled",
                by=request.by,
                authenticated=request.authenticated,
                via="api" if request.authenticated else "temporal",
                at=workflow.now(),
            )
        )
        who = f" by {request.by}" if request.by else ""
        self._finish(RunStatus.CANCELLED, f"Cancelled{who} by request.")

    def _say(self, role: str, content: str) -> None:
        state = self._state
        state.messages.append(
            Message(role=role, step=state.current_step, content=content, at=workflow.now())  # type: ignore[arg-type]
        )

    def _record_usage(self, usage: LlmUsage) -> None:
        state = self._state
        state.usage.append(usage)
        state.usage_totals = state.usage_totals.add(usage)

    def _record_failed_usage(self, err: ActivityError) -> None:
        """Tokens an agent spent before failing still count: providers attach them as details."""
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details:
            try:
                self._record_usage(LlmUsage.model_validate(cause.details[0]))
            except ValidationError:
                pass  # details of another kind: nothing spent to account for

    def _activity_failure_message(self, err: ActivityError) -> str:
        cause = err.cause
        detail = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        return f"{self._state.current_step.value} failed: {detail}"


_VERB = {HumanApproval.APPROVED: "approve", HumanApproval.REJECTED: "reject"}

_NEXT_STEP: dict[Step, Step] = {
    Step.DATASET_INTAKE: Step.RESEARCH,
    Step.RESEARCH: Step.DATA_ENGINEERING,
    Step.DATA_ENGINEERING: Step.HUMAN_APPROVAL,
    Step.HUMAN_APPROVAL: Step.BROWSER_AGENT,
    Step.BROWSER_AGENT: Step.ML,
    Step.ML: Step.ML_WORKER,
    Step.ML_WORKER: Step.CRITIC,
    Step.CRITIC: Step.COMPLETE,
}


def _failure_detail(result: ExecutionResult) -> str:
    """The last line the failed code wrote to stderr, which is where Python puts the error."""
    lines = [line for line in result.stderr_tail.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no error output"
    return f"exit code {result.exit_code}, {last[:500]}"


def _review_text(outcome: ReviewOutcome) -> str:
    review = outcome.review
    lines = [f"{review.verdict}: {review.summary}"]
    lines += [f"[{f.severity}] {f.category}: {f.message}" for f in review.findings]
    return "\n".join(lines)
