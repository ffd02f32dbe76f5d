"""Translates run operations into Temporal start, query, signal, cancel and list calls.

The API keeps no state of its own: everything it answers comes from Temporal, so any number
of replicas can serve behind a load balancer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.client import (
    WorkflowExecutionStatus as ExecutionStatus,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import BadRequest, RunNotFound, TemporalUnavailable, WrongRunState
from api.schemas import RunList, RunSummary
from settings import Settings
from workflows.contract import (
    CURRENT_STEP_ATTRIBUTE,
    QUERY_STATE,
    RUN_STATUS_ATTRIBUTE,
    SIGNAL_APPROVE,
    SIGNAL_REJECT,
    WORKFLOW_TYPE,
)
from workflows.data_science_run import DataScienceRun
from workflows.models import RunInput, RunOptions, RunState, RunStatus, Step

# What Temporal says of a closed run when the run itself could not record it (e.g. terminated).
_CLOSED_STATUS = {
    ExecutionStatus.COMPLETED: RunStatus.COMPLETED,
    ExecutionStatus.FAILED: RunStatus.FAILED,
    ExecutionStatus.CANCELED: RunStatus.CANCELLED,
    ExecutionStatus.TERMINATED: RunStatus.CANCELLED,
    ExecutionStatus.TIMED_OUT: RunStatus.TIMED_OUT,
}


def new_workflow_id() -> str:
    return f"wf-{secrets.token_hex(6)}"


def workflow_id_for_key(idempotency_key: str) -> str:
    """The same Idempotency-Key always names the same run."""
    return f"wf-{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}"


class TemporalGateway:
    """Connects to Temporal on first use, so the API starts (and reports 503) while it is down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await Client.connect(
                        self.settings.temporal_address,
                        namespace=self.settings.temporal_namespace,
                        data_converter=pydantic_data_converter,
                    )
                except RuntimeError as err:
                    raise TemporalUnavailable(
                        f"Cannot reach Temporal at {self.settings.temporal_address}: {err}. "
                        "Start it (make dev) or set TEMPORAL_ADDRESS."
                    ) from err
            return self._client


@asynccontextmanager
async def temporal_errors(workflow_id: str | None = None) -> AsyncIterator[None]:
    """Map Temporal's errors to the API's, naming the run where there is one."""
    try:
        yield
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND and workflow_id:
            raise RunNotFound(f"No run with id {workflow_id!r}.") from err
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise BadRequest(f"Temporal refused the request: {err.message}") from err
        # Timeouts (a query nobody answers surfaces as CANCELLED), an unknown namespace, a
        # server going away: all mean the service cannot answer now, not that the client erred.
        raise TemporalUnavailable(
            f"Temporal could not answer ({err.status.name}: {err.message})"
            + (f" for run {workflow_id!r}" if workflow_id else "")
            + ". Is the server up, TEMPORAL_NAMESPACE right, and a worker (python worker.py) "
            "running?"
        ) from err


class RunService:
    def __init__(self, gateway: TemporalGateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings

    async def _handle(self, workflow_id: str) -> WorkflowHandle[object, RunState]:
        client = await self.gateway.client()
        return client.get_workflow_handle(workflow_id, result_type=RunState)

    async def start(self, user_goal: str, dataset_url: str, workflow_id: str) -> RunSummary | None:
        """Start a run, or find the one already started under this id.

        Returns the existing run's summary when the id was used before, None for a new run.
        """
        client = await self.gateway.client()
        options = RunOptions(
            approval_timeout_seconds=self.settings.approval_timeout_seconds,
            max_rejections=self.settings.max_rejections,
            max_critic_rounds=self.settings.max_critic_rounds,
        )
        async with temporal_errors():
            try:
                await client.start_workflow(
                    DataScienceRun.run,
                    RunInput(user_goal=user_goal, dataset_url=dataset_url, options=options),
                    id=workflow_id,
                    task_queue=self.settings.temporal_task_queue,
                    # A retried start (same id) finds the first run instead of a second one;
                    # failing on conflict, rather than joining, lets us check it is the same ask.
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    memo={"user_goal": user_goal, "dataset_url": dataset_url},
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(RUN_STATUS_ATTRIBUTE, RunStatus.STARTED.value),
                            SearchAttributePair(CURRENT_STEP_ATTRIBUTE, Step.RESEARCH.value),
                        ]
                    ),
                    static_summary=user_goal[:200],
                )
                return None
            except WorkflowAlreadyStartedError:
                existing = await client.get_workflow_handle(workflow_id).describe()
        memo = await existing.memo()
        if (
            existing.workflow_type != WORKFLOW_TYPE
            or memo.get("user_goal") != user_goal
            or memo.get("dataset_url") != dataset_url
        ):
            raise WrongRunState(
                f"Run {workflow_id!r} already exists with a different goal or dataset; "
                "choose another workflow_id or Idempotency-Key."
            )
        return await _summary(existing)

    async def _describe(self, workflow_id: str) -> WorkflowExecutionDescription:
        """The run's description from Temporal (no worker needed); 404 for other types."""
        handle = await self._handle(workflow_id)
        async with temporal_errors(workflow_id):
            description = await handle.describe()
        if description.workflow_type != WORKFLOW_TYPE:
            raise RunNotFound(f"{workflow_id!r} is not a data-science run.")
        return description

    async def state(self, workflow_id: str) -> RunState:
        description = await self._describe(workflow_id)  # 404s without waiting for a worker
        handle = await self._handle(workflow_id)
        timeout = timedelta(seconds=self.settings.query_timeout_seconds)
        async with temporal_errors(workflow_id):
            try:
                state = await handle.query(QUERY_STATE, result_type=RunState, rpc_timeout=timeout)
            except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
                raise RunNotFound(f"Run {workflow_id!r} cannot report its state: {err}") from err
        status = _reported_status(state.status, description.status)
        if status == state.status or description.status is None:
            return state
        return state.model_copy(
            update={
                "status": status,
                "last_error": state.last_error
                or f"Ended outside the service (Temporal status {description.status.name}).",
            }
        )

    async def approve(self, workflow_id: str, version: int | None = None) -> RunState:
        return await self._decide(workflow_id, SIGNAL_APPROVE, {"version": version})

    async def reject(
        self, workflow_id: str, feedback: str | None, version: int | None = None
    ) -> RunState:
        return await self._decide(
            workflow_id, SIGNAL_REJECT, {"feedback": feedback, "version": version}
        )

    async def _decide(self, workflow_id: str, signal: str, payload: dict[str, object]) -> RunState:
        state = await self.state(workflow_id)
        if state.status != RunStatus.AWAITING_APPROVAL:
            raise WrongRunState(
                f"Run {workflow_id!r} is {state.status.value} at {state.current_step.value}, "
                f"not awaiting approval; nothing to {signal}."
            )
        waiting = state.code_context.eda_code.version if state.code_context.eda_code else None
        version = payload.get("version")
        if version is not None and version != waiting:
            raise WrongRunState(
                f"Run {workflow_id!r} is waiting on EDA code v{waiting}, not v{version}; "
                f"review v{waiting} (GET /workflow/{workflow_id}) before you {signal} it."
            )
        handle = await self._handle(workflow_id)
        async with temporal_errors(workflow_id):
            # The workflow checks the version again: another reviewer may act in between.
            await handle.signal(signal, {k: v for k, v in payload.items() if v is not None})
        return state

    async def ensure_exists(self, workflow_id: str) -> None:
        """404 unless Temporal knows the run; needs no worker, unlike a query."""
        await self._describe(workflow_id)

    async def cancel(self, workflow_id: str) -> None:
        description = await self._describe(workflow_id)
        if description.status != ExecutionStatus.RUNNING:
            status = _CLOSED_STATUS.get(description.status, RunStatus.FAILED)  # type: ignore[arg-type]
            raise WrongRunState(
                f"Run {workflow_id!r} has already ended ({status.value}); nothing to cancel."
            )
        handle = await self._handle(workflow_id)
        async with temporal_errors(workflow_id):
            await handle.cancel()

    async def list_runs(
        self, status: RunStatus | None, limit: int, page_token: str | None
    ) -> RunList:
        client = await self.gateway.client()
        query = f"WorkflowType = '{WORKFLOW_TYPE}'"
        if status is not None:
            query += f" AND {_status_filter(status)}"
        token = _decode_page_token(page_token)
        async with temporal_errors():
            iterator = client.list_workflows(query, page_size=limit, next_page_token=token)
            await iterator.fetch_next_page()
            page = list(iterator.current_page or [])
            summaries = await asyncio.gather(*(_summary(execution) for execution in page))
        next_token = iterator.next_page_token
        return RunList(
            workflows=list(summaries),
            count=len(summaries),
            next_page_token=base64.urlsafe_b64encode(next_token).decode() if next_token else None,
        )

    async def check_health(self) -> None:
        """Temporal answers and knows our namespace (a wrong TEMPORAL_NAMESPACE is unhealthy)."""
        client = await self.gateway.client()
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=self.settings.temporal_namespace),
            timeout=timedelta(seconds=3),
        )


# Temporal statuses of runs closed from outside, which never recorded a final RunStatus.
_CLOSED_FROM_OUTSIDE = {RunStatus.CANCELLED: "Terminated", RunStatus.TIMED_OUT: "TimedOut"}


def _status_filter(status: RunStatus) -> str:
    """Visibility filter matching what `_summary` reports for each run."""
    recorded = f"{RUN_STATUS_ATTRIBUTE.name} = '{status.value}'"
    if not status.is_final:
        # A run terminated while it waited still carries its last RunStatus; it is not waiting.
        return f"{recorded} AND ExecutionStatus = 'Running'"
    if status in _CLOSED_FROM_OUTSIDE:
        return f"({recorded} OR ExecutionStatus = '{_CLOSED_FROM_OUTSIDE[status]}')"
    return recorded


def _reported_status(recorded: RunStatus, execution: ExecutionStatus | None) -> RunStatus:
    """What the run recorded, unless Temporal closed it from outside (terminated, timed out)
    before it could say so itself."""
    if recorded.is_final or execution in (None, ExecutionStatus.RUNNING):
        return recorded
    return _CLOSED_STATUS.get(execution, RunStatus.FAILED)


def _decode_page_token(token: str | None) -> bytes | None:
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise BadRequest("page_token is not one this API returned; start from the first page.")
    return decoded


async def _summary(execution: WorkflowExecution) -> RunSummary:
    attributes = execution.typed_search_attributes
    recorded = attributes.get(RUN_STATUS_ATTRIBUTE) or ""
    status = RunStatus(recorded) if recorded in RunStatus._value2member_map_ else RunStatus.STARTED
    status = _reported_status(status, execution.status)
    step = attributes.get(CURRENT_STEP_ATTRIBUTE) or ""
    memo = await execution.memo()
    return RunSummary(
        workflow_id=execution.id,
        status=status,
        current_step=Step(step) if step in Step._value2member_map_ else None,
        user_goal=memo.get("user_goal"),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )
