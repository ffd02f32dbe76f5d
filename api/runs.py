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
from datetime import UTC, datetime, timedelta

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
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
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import (
    BadRequest,
    Forbidden,
    RunNotFound,
    TemporalUnavailable,
    TooManyRequests,
    WrongRunState,
)
from api.schemas import RunList, RunSummary
from api.security import Principal, Role
from settings import Settings
from temporal_connection import temporal_connect_options
from workflows.contract import (
    CURRENT_STEP_ATTRIBUTE,
    OWNER_ATTRIBUTE,
    QUERY_STATE,
    RUN_STATUS_ATTRIBUTE,
    SIGNAL_CANCELLED_BY,
    UPDATE_APPROVE,
    UPDATE_REJECT,
    WORKFLOW_TYPE,
    ErrorType,
)
from workflows.data_science_run import STATUS_MEMO_KEY, DataScienceRun
from workflows.models import (
    Decision,
    RunInput,
    RunOptions,
    RunState,
    RunStatus,
    RunStatusView,
    Step,
)

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
                    self._client = await Client.connect(**temporal_connect_options(self.settings))
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

    async def start(
        self, user_goal: str, dataset_url: str, workflow_id: str, principal: Principal
    ) -> RunSummary | None:
        """Start a run, or find the one already started under this id.

        Returns the existing run's summary when the id was used before, None for a new run.
        """
        client = await self.gateway.client()
        # The memo is readable by anyone with Temporal access: the URL itself may carry
        # credentials, so only its digest is kept there, to recognise a retried start.
        dataset_digest = _digest(dataset_url)
        options = RunOptions(
            approval_timeout_seconds=self.settings.approval_timeout_seconds,
            max_rejections=self.settings.max_rejections,
            max_critic_rounds=self.settings.max_critic_rounds,
            notify=bool(self.settings.webhook_targets),
        )
        async with temporal_errors():
            try:
                await self._check_quota(principal)
                await client.start_workflow(
                    DataScienceRun.run,
                    RunInput(
                        user_goal=user_goal,
                        dataset_url=dataset_url,
                        options=options,
                        owner=principal.name,
                        owner_authenticated=principal.authenticated,
                    ),
                    id=workflow_id,
                    task_queue=self.settings.temporal_task_queue,
                    # A retried start (same id) finds the first run instead of a second one;
                    # failing on conflict, rather than joining, lets us check it is the same ask.
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    memo={"user_goal": user_goal, "dataset_sha256": dataset_digest},
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(RUN_STATUS_ATTRIBUTE, RunStatus.STARTED.value),
                            SearchAttributePair(CURRENT_STEP_ATTRIBUTE, Step.DATASET_INTAKE.value),
                            SearchAttributePair(OWNER_ATTRIBUTE, principal.name),
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
            or memo.get("dataset_sha256") != dataset_digest
            or existing.typed_search_attributes.get(OWNER_ATTRIBUTE) != principal.name
        ):
            raise WrongRunState(
                f"Run {workflow_id!r} already exists with a different goal, dataset or owner; "
                "choose another workflow_id or Idempotency-Key."
            )
        return await _summary(existing)

    async def _describe(
        self, workflow_id: str, reader: Principal | None = None
    ) -> WorkflowExecutionDescription:
        """The run's description from Temporal (no worker needed); 404 for other types, and
        for a `reader` who may not see the run (its existence is not revealed either)."""
        handle = await self._handle(workflow_id)
        async with temporal_errors(workflow_id):
            description = await handle.describe()
        if description.workflow_type != WORKFLOW_TYPE:
            raise RunNotFound(f"{workflow_id!r} is not a data-science run.")
        if description.task_queue != self.settings.temporal_task_queue:
            # Another deployment's run in a shared namespace: not this service's to show.
            raise RunNotFound(f"No run with id {workflow_id!r}.")
        if reader is not None and not reader.reads_every_run:
            if description.typed_search_attributes.get(OWNER_ATTRIBUTE) != reader.name:
                raise RunNotFound(f"No run with id {workflow_id!r}.")
        return description

    async def status(self, workflow_id: str, reader: Principal | None = None) -> RunStatusView:
        """The status document from the memo the run keeps current: one describe, no worker.

        Runs started before the run kept it there are asked by query instead.
        """
        description = await self._describe(workflow_id, reader)
        try:
            memo = await description.memo()
        except (KeyError, ValueError) as err:
            raise TemporalUnavailable(
                f"Run {workflow_id!r} was written with payload encryption keys this API does "
                "not hold; give it the same PAYLOAD_ENCRYPTION_KEYS as the worker."
            ) from err
        if STATUS_MEMO_KEY not in memo:
            return (await self.state(workflow_id)).status_view()
        view = RunStatusView.model_validate(memo[STATUS_MEMO_KEY])
        status = _reported_status(view.status, description.status)
        if status == view.status:
            return view
        return view.model_copy(
            update={
                "status": status,
                "last_error": view.last_error
                or f"Ended outside the service (Temporal status {description.status.name}).",  # type: ignore[union-attr]
            }
        )

    async def state(self, workflow_id: str, reader: Principal | None = None) -> RunState:
        # 404s without waiting for a worker, and for a reader who may not see the run.
        description = await self._describe(workflow_id, reader)
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

    def own_runs_query(self, status: RunStatus | None = None) -> str:
        """Visibility query for this deployment's runs (its task queue), in `status` if given.
        Other deployments may share the namespace; their runs are not this API's to show."""
        query = (
            f"WorkflowType = '{WORKFLOW_TYPE}' AND "
            f"TaskQueue = {_quoted(self.settings.temporal_task_queue)}"
        )
        return query if status is None else f"{query} AND {_status_filter(status)}"

    async def _check_quota(self, principal: Principal) -> None:
        limit = self.settings.max_active_runs_per_principal
        if not limit:
            return
        client = await self.gateway.client()
        query = (
            f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND "
            f"{OWNER_ATTRIBUTE.name} = {_quoted(principal.name)}"
        )
        active = (await client.count_workflows(query)).count
        if active >= limit:
            raise TooManyRequests(
                f"{principal.name} already has {active} active runs; the limit is {limit} "
                "(MAX_ACTIVE_RUNS_PER_PRINCIPAL). Wait for one to finish or cancel one.",
                headers={"Retry-After": "60"},
            )

    async def approve(
        self,
        workflow_id: str,
        version: int | None,
        principal: Principal,
        target: str | None = None,
    ) -> RunStatusView:
        return await self._decide(workflow_id, UPDATE_APPROVE, principal, version, None, target)

    async def reject(
        self,
        workflow_id: str,
        feedback: str | None,
        version: int | None,
        principal: Principal,
        target: str | None = None,
    ) -> RunStatusView:
        return await self._decide(workflow_id, UPDATE_REJECT, principal, version, feedback, target)

    async def _decide(
        self,
        workflow_id: str,
        update: str,
        principal: Principal,
        version: int | None,
        feedback: str | None,
        target: str | None = None,
    ) -> RunStatusView:
        """Send the decision as an update: the answer says whether it took effect."""
        description = await self._describe(workflow_id)
        if description.status != ExecutionStatus.RUNNING:
            ended = _CLOSED_STATUS.get(description.status, RunStatus.FAILED)  # type: ignore[arg-type]
            raise WrongRunState(
                f"Run {workflow_id!r} has already ended ({ended.value}); it is not awaiting "
                f"approval, so there is nothing to {update}."
            )
        owner = description.typed_search_attributes.get(OWNER_ATTRIBUTE)
        if (
            update == UPDATE_APPROVE
            and self.settings.require_separate_approver
            and owner == principal.name
        ):
            raise Forbidden(
                f"{principal.name} started run {workflow_id!r} and cannot also approve it: "
                "REQUIRE_SEPARATE_APPROVER is on, so another approver must decide."
            )
        wait = self.settings.decision_timeout_seconds
        decision = Decision(
            by=principal.name,
            authenticated=principal.authenticated,
            version=version,
            feedback=feedback,
            target=target,
            # If no worker takes it in time the caller hears 503; a late delivery must not count.
            expires_at=datetime.now(UTC) + timedelta(seconds=wait),
        )
        handle = await self._handle(workflow_id)
        async with temporal_errors(workflow_id):
            try:
                return await handle.execute_update(
                    update,
                    decision,
                    result_type=RunStatusView,
                    rpc_timeout=timedelta(seconds=wait),
                )
            except WorkflowUpdateFailedError as err:
                cause = err.cause
                if isinstance(cause, ApplicationError) and cause.type == ErrorType.DECISION_REFUSED:
                    raise WrongRunState(cause.message) from err
                raise
            except WorkflowUpdateRPCTimeoutOrCancelledError as err:
                raise TemporalUnavailable(
                    f"No worker took the {update} decision for run {workflow_id!r} within "
                    f"{wait:g} s (DECISION_TIMEOUT_SECONDS), so it was not applied. Check that "
                    "a worker (python worker.py) is running, then send it again."
                ) from err
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    # It existed a moment ago (describe said so): it has just closed.
                    raise WrongRunState(
                        f"Run {workflow_id!r} has just ended; nothing to {update}."
                    ) from err
                raise

    async def ensure_exists(self, workflow_id: str, reader: Principal | None = None) -> None:
        """404 unless Temporal knows the run and `reader` may see it; needs no worker."""
        await self._describe(workflow_id, reader)

    async def cancel(self, workflow_id: str, principal: Principal) -> None:
        # A run the caller may not even see is a 404; one they see but do not own is a 403.
        description = await self._describe(workflow_id, principal)
        owner = description.typed_search_attributes.get(OWNER_ATTRIBUTE)
        if not principal.is_admin and owner != principal.name:
            raise Forbidden(
                f"Run {workflow_id!r} was started by {owner or 'someone outside the API'}; "
                "only its owner or an admin may cancel it."
            )
        if description.status != ExecutionStatus.RUNNING:
            status = _CLOSED_STATUS.get(description.status, RunStatus.FAILED)  # type: ignore[arg-type]
            raise WrongRunState(
                f"Run {workflow_id!r} has already ended ({status.value}); nothing to cancel."
            )
        handle = await self._handle(workflow_id)
        async with temporal_errors(workflow_id):
            # Temporal's cancel carries no name, so the run hears who asked just before it.
            await handle.signal(
                SIGNAL_CANCELLED_BY,
                Decision(by=principal.name, authenticated=principal.authenticated),
            )
            await handle.cancel()

    async def list_runs(
        self,
        status: RunStatus | None,
        limit: int,
        page_token: str | None,
        principal: Principal,
        owner: str | None = None,
    ) -> RunList:
        """Runs the caller may see: admins and viewers all; others their own, and approvers
        also every run that awaits approval. `owner` narrows further ("me" is the caller)."""
        client = await self.gateway.client()
        query = self.own_runs_query(status)
        if owner is not None:
            name = principal.name if owner == "me" else owner
            query += f" AND {OWNER_ATTRIBUTE.name} = {_quoted(name)}"
        if not (principal.is_admin or Role.VIEWER in principal.roles):
            visible = f"{OWNER_ATTRIBUTE.name} = {_quoted(principal.name)}"
            if Role.APPROVER in principal.roles:
                visible = f"({visible} OR ({_status_filter(RunStatus.AWAITING_APPROVAL)}))"
            query += f" AND {visible}"
        token = _decode_page_token(page_token)
        async with temporal_errors(), _page_token_errors(token is not None):
            iterator = client.list_workflows(query, page_size=limit, next_page_token=token)
            await iterator.fetch_next_page()
            page = list(iterator.current_page or [])
            summaries = await asyncio.gather(*(_summary(execution) for execution in page))
        next_token = iterator.next_page_token
        return RunList(
            workflows=list(summaries),
            count=len(summaries),
            next_page_token=_encode_page_token(next_token) if next_token else None,
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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _quoted(value: str) -> str:
    """A string literal for a visibility query; a name cannot close the quote early."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


@asynccontextmanager
async def _page_token_errors(token_given: bool) -> AsyncIterator[None]:
    """A page token that decodes but that Temporal cannot use is the caller's mistake (400)."""
    try:
        yield
    except RPCError as err:
        if token_given and err.status not in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.CANCELLED,
        ):
            raise BadRequest(
                "page_token is not one this API returned for this listing; start from the "
                "first page."
            ) from err
        raise


# Page tokens carry a check of Temporal's token, so one this API never returned is refused
# here (400) instead of costing Temporal retries and ending as a 503. It is a checksum, not a
# secret: visibility scoping is in the query the API sends with every page, never in the token.
_PAGE_TOKEN_CHECK_BYTES = 8


def _page_token_check(raw: bytes) -> bytes:
    return hashlib.sha256(b"orchestrator-page-token:" + raw).digest()[:_PAGE_TOKEN_CHECK_BYTES]


def _encode_page_token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(_page_token_check(raw) + raw).decode()


def _decode_page_token(token: str | None) -> bytes | None:
    if not token:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        decoded = b""
    check, raw = decoded[:_PAGE_TOKEN_CHECK_BYTES], decoded[_PAGE_TOKEN_CHECK_BYTES:]
    if not raw or not secrets.compare_digest(check, _page_token_check(raw)):
        raise BadRequest("page_token is not one this API returned; start from the first page.")
    return raw


async def _summary(execution: WorkflowExecution) -> RunSummary:
    attributes = execution.typed_search_attributes
    recorded = attributes.get(RUN_STATUS_ATTRIBUTE) or ""
    status = RunStatus(recorded) if recorded in RunStatus._value2member_map_ else RunStatus.STARTED
    status = _reported_status(status, execution.status)
    step = attributes.get(CURRENT_STEP_ATTRIBUTE) or ""
    try:
        memo = await execution.memo()
    except (KeyError, ValueError):
        # Encrypted under keys this API does not hold (or written by something else): list the
        # run without its goal rather than fail the whole page.
        memo = {}
    return RunSummary(
        workflow_id=execution.id,
        status=status,
        current_step=Step(step) if step in Step._value2member_map_ else None,
        user_goal=memo.get("user_goal"),
        owner=attributes.get(OWNER_ATTRIBUTE),
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )
