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

from workflows.contract import (
    ACTIVITY_TIMEOUTS,
    CURRENT_STEP_ATTRIBUTE,
    QUERY_STATE,
    QUERY_STATUS,
    RUN_STATUS_ATTRIBUTE,
    SIGNAL_APPROVE,
    SIGNAL_REJECT,
    WORKFLOW_TYPE,
    ActivityName,
    ErrorType,
    retry_policy,
)
from workflows.models import (
    AgentContext,
    CodeOutcome,
    DatasetInfo,
    DatasetRequest,
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
    RunInput,
    RunState,
    RunStatus,
    RunStatusView,
    Step,
)
from workflows.scoring import is_better

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


def _read_decision(payload: Any) -> tuple[str | None, int | None]:
    """Feedback text and the code version decided on, from whatever an operator can type
    into `temporal workflow signal --input`: nothing, a bare string, or a JSON object."""
    if payload is None:
        return None, None
    if isinstance(payload, str):
        return payload.strip() or None, None
    if isinstance(payload, dict):
        text = payload.get("feedback") or payload.get("comment")
        version = payload.get("version")
        return (
            (str(text).strip() or None) if text else None,
            version if isinstance(version, int) and not isinstance(version, bool) else None,
        )
    return str(payload), None


@workflow.defn(name=WORKFLOW_TYPE)
class DataScienceRun:
    @workflow.init
    def __init__(self, run_input: RunInput) -> None:
        # Built here, not in run(), so queries answer from the very first workflow task.
        now = workflow.now()
        self._state = RunState(
            workflow_id=workflow.info().workflow_id,
            user_goal=run_input.user_goal,
            dataset_url=run_input.dataset_url,
            created_at=now,
            updated_at=now,
        )
        self._decision: tuple[HumanApproval, str | None] | None = None

    # --- Handlers -----------------------------------------------------------------------------

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> RunStatusView:
        return self._state.status_view()

    @workflow.query(name=QUERY_STATE)
    def state(self) -> RunState:
        return self._state

    @workflow.signal(name=SIGNAL_APPROVE)
    def approve(self, payload: Any = None) -> None:
        self._decide(HumanApproval.APPROVED, *_read_decision(payload))

    @workflow.signal(name=SIGNAL_REJECT)
    def reject(self, payload: Any = None) -> None:
        self._decide(HumanApproval.REJECTED, *_read_decision(payload))

    def _decide(self, decision: HumanApproval, text: str | None, version: int | None) -> None:
        state = self._state
        if state.status != RunStatus.AWAITING_APPROVAL or self._decision is not None:
            # A decision only counts while the run waits for one; a stray CLI signal is noted.
            self._say(
                "system",
                f"Ignored {decision.value} signal: the run is {state.status.value} "
                f"at {state.current_step.value}.",
            )
            return
        current = state.code_context.eda_code.version if state.code_context.eda_code else None
        if version is not None and version != current:
            # The reviewer saw another version than the one now waiting: never approve unseen code.
            self._say(
                "system",
                f"Ignored {decision.value} signal for EDA code v{version}: v{current} is waiting.",
            )
            return
        self._decision = (decision, text)

    # --- The run ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, run_input: RunInput) -> RunState:
        try:
            await self._run_steps(run_input)
        except BaseException as err:
            # Record why the run ended, then fail the workflow so the Web UI shows it too.
            if is_cancelled_exception(err):
                self._finish(RunStatus.CANCELLED, "Cancelled by request.")
                raise
            if isinstance(err, RunEnded):
                self._finish(err.status, err.message)
                raise ApplicationError(
                    err.message, type=err.error_type, non_retryable=True
                ) from None
            if isinstance(err, ActivityError):
                self._record_failed_usage(err)
                message = self._activity_failure_message(err)
                self._finish(RunStatus.FAILED, message)
                raise ApplicationError(
                    message, type=ErrorType.STEP_FAILED, non_retryable=True
                ) from None
            raise
        self._finish(RunStatus.COMPLETED, None)
        return self._state

    async def _run_steps(self, run_input: RunInput) -> None:
        options = run_input.options
        state = self._state

        self._enter(Step.RESEARCH, RunStatus.RUNNING)
        dataset = await self._call(
            ActivityName.FETCH_DATASET,
            DatasetRequest(
                workflow_id=state.workflow_id,
                dataset_url=state.dataset_url,
                user_goal=state.user_goal,
            ),
            DatasetInfo,
        )
        state.dataset_info = dataset
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
        self._say("agent", f"EDA code ran (exit code {state.code_context.eda_result.exit_code}).")

        await self._train_until_accepted(options.max_critic_rounds)
        self._enter(Step.COMPLETE, RunStatus.RUNNING)

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

            decision, text = await self._await_decision(timeout_seconds)
            if decision == HumanApproval.APPROVED:
                self._say("human", f"Approved EDA code v{version}." + (f" {text}" if text else ""))
                return
            state.rejection_count += 1
            feedback = text or "Rejected without comment; revise the EDA code."
            state.review_feedback.append(
                Feedback(
                    source="human", text=feedback, step=Step.DATA_ENGINEERING, at=workflow.now()
                )
            )
            self._say("human", f"Rejected EDA code v{version}: {feedback}")
            if state.rejection_count > max_rejections:
                raise RunEnded(
                    RunStatus.FAILED,
                    f"The EDA code was rejected {state.rejection_count} times; the limit is "
                    f"{max_rejections} (MAX_REJECTIONS). Start a new run with a refined goal.",
                    ErrorType.REJECTION_LIMIT_REACHED,
                )

    async def _await_decision(self, timeout_seconds: float) -> tuple[HumanApproval, str | None]:
        state = self._state
        self._decision = None
        state.human_approval = HumanApproval.PENDING
        self._enter(Step.HUMAN_APPROVAL, RunStatus.AWAITING_APPROVAL)
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None, timeout=timedelta(seconds=timeout_seconds)
            )
        except TimeoutError:
            raise RunEnded(
                RunStatus.TIMED_OUT,
                f"No approval arrived within {timeout_seconds:g} s (APPROVAL_TIMEOUT_SECONDS); "
                "the run stopped waiting. Start a new run to try again.",
                ErrorType.APPROVAL_TIMED_OUT,
            ) from None
        assert self._decision is not None
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
                source="critic", text=_review_text(review), step=Step.CRITIC, at=workflow.now()
            )
        )
        self._say("agent", f"Critic verdict on v{version}: {review.review.verdict}.")
        return TrainingRound(version, outcome.code, result, review.review)

    # --- Helpers ------------------------------------------------------------------------------

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

    def _finish(self, status: RunStatus, error: str | None) -> None:
        state = self._state
        state.last_error = error
        state.completed_at = workflow.now()
        self._enter(state.current_step if status != RunStatus.COMPLETED else Step.COMPLETE, status)
        state.next_step = None
        self._say("system", f"Run {status.value}." + (f" {error}" if error else ""))

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


_NEXT_STEP: dict[Step, Step] = {
    Step.RESEARCH: Step.DATA_ENGINEERING,
    Step.DATA_ENGINEERING: Step.HUMAN_APPROVAL,
    Step.HUMAN_APPROVAL: Step.BROWSER_AGENT,
    Step.BROWSER_AGENT: Step.ML,
    Step.ML: Step.ML_WORKER,
    Step.ML_WORKER: Step.CRITIC,
    Step.CRITIC: Step.COMPLETE,
}


def _review_text(outcome: ReviewOutcome) -> str:
    review = outcome.review
    lines = [f"{review.verdict}: {review.summary}"]
    lines += [f"[{f.severity}] {f.category}: {f.message}" for f in review.findings]
    return "\n".join(lines)
