"""The REST API: thin routes that hand each request to RunService.

Run it with `uvicorn api.main:app` (settings from the environment and `.env`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from temporalio.service import RPCError

from activities.artifacts import ArtifactNotFound, ArtifactStore
from activities.storage import ARTIFACTS_PREFIX, storage_from_settings
from api.artifact_responses import artifact_response
from api.bind_check import refuse_insecure_bind
from api.codec_routes import install_codec_endpoint
from api.datasets_routes import dataset_url_for_start
from api.datasets_routes import router as datasets_router
from api.errors import ApiError, RunNotFound, install_error_handlers
from api.events import EventHub
from api.events import router as events_router
from api.observability import install_observability
from api.openapi_responses import GUARDED, document_errors_everywhere, error_responses
from api.predict_routes import router as predict_router
from api.runs import RunService, TemporalGateway, new_workflow_id, workflow_id_for_key
from api.schemas import (
    ActionResponse,
    ApproveRequest,
    ArtifactEntry,
    ArtifactList,
    Health,
    RejectRequest,
    RunList,
    StartRequest,
    StartResponse,
)
from api.security import AccessControl, Principal, Role, limit_by_address, require_role
from api.ui import install_desk
from json_logging import configure_logging
from settings import Settings
from telemetry import API_SERVICE, configure_tracing, instrument_httpx
from workflows.models import RunState, RunStatus, RunStatusView

logger = logging.getLogger("orchestrator.api")
router = APIRouter()

# Every route that names a run: its id may be unknown (404) or malformed for Temporal (400).
ERROR_RESPONSES = error_responses(*GUARDED, 400, 404, 409)

# Who may call what; see "Running it for a team" in the README.
Viewer = Annotated[Principal, Depends(require_role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
RunStarter = Annotated[Principal, Depends(require_role(Role.OPERATOR, starts_run=True))]
Approver = Annotated[Principal, Depends(require_role(Role.APPROVER))]


def _runs(request: Request) -> RunService:
    service: RunService = request.app.state.runs
    return service


@router.post(
    "/workflow/start", response_model=StartResponse, tags=["runs"], responses=ERROR_RESPONSES
)
async def start_run(
    request: Request,
    principal: RunStarter,
    body: StartRequest,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> StartResponse:
    """Start a data-science run. A repeated `workflow_id` or `Idempotency-Key` returns that run."""
    if body.workflow_id:
        workflow_id = body.workflow_id
    elif idempotency_key:
        workflow_id = workflow_id_for_key(idempotency_key)
    else:
        workflow_id = new_workflow_id()
    dataset_url = await asyncio.to_thread(
        dataset_url_for_start, body, principal, request.app.state.storage
    )
    existing = await _runs(request).start(body.user_goal, dataset_url, workflow_id, principal)
    if existing is not None:
        return StartResponse(
            workflow_id=workflow_id,
            status=existing.status,
            message="This run was already started; returning it.",
        )
    logger.info(
        "Workflow started successfully",
        extra={"workflow_id": workflow_id, "user_goal": body.user_goal},
    )
    return StartResponse(
        workflow_id=workflow_id,
        status=RunStatus.STARTED,
        message="Workflow initialized and running",
    )


@router.get(
    "/workflow/{workflow_id}/status",
    response_model=RunStatusView,
    tags=["runs"],
    responses=ERROR_RESPONSES,
)
async def run_status(request: Request, principal: Viewer, workflow_id: str) -> RunStatusView:
    """The spec's status document; works for finished runs too."""
    return await _runs(request).status(workflow_id, principal)


@router.get(
    "/workflow/{workflow_id}", response_model=RunState, tags=["runs"], responses=ERROR_RESPONSES
)
async def run_state(request: Request, principal: Viewer, workflow_id: str) -> RunState:
    """The full state: plan, generated code, execution results, review feedback, usage."""
    return await _runs(request).state(workflow_id, principal)


@router.post(
    "/workflow/{workflow_id}/approve",
    response_model=ActionResponse,
    tags=["approval"],
    responses=ERROR_RESPONSES,
)
async def approve_run(
    request: Request,
    principal: Approver,
    workflow_id: str,
    body: Annotated[ApproveRequest | None, Body()] = None,
) -> ActionResponse:
    """Approve the generated EDA code so the run executes it.

    200 means this call's approval took effect; a decision that lost a race, names another
    code version, or arrives when the run is not waiting gets 409 with the reason.
    """
    target = body.target if body else None
    run = await _runs(request).approve(
        workflow_id, body.version if body else None, principal, target=target
    )
    logger.info("Run approved", extra={"workflow_id": workflow_id, "by": principal.name})
    return ActionResponse(
        workflow_id=workflow_id,
        status="approved",
        message=f"Approved EDA code v{run.eda_version}; the run continues."
        if target is None
        else f"Target {target!r} chosen: unless it is already the plan's, the run re-plans for "
        "it and the new EDA code waits for approval again.",
        run=run,
    )


@router.post(
    "/workflow/{workflow_id}/reject",
    response_model=ActionResponse,
    tags=["approval"],
    responses=ERROR_RESPONSES,
)
async def reject_run(
    request: Request,
    principal: Approver,
    workflow_id: str,
    body: Annotated[RejectRequest | None, Body()] = None,
) -> ActionResponse:
    """Reject the EDA code; the Data Engineering agent regenerates it with the feedback."""
    feedback = body.feedback if body else None
    run = await _runs(request).reject(
        workflow_id,
        feedback,
        body.version if body else None,
        principal,
        target=body.target if body else None,
    )
    logger.info("Run rejected", extra={"workflow_id": workflow_id, "by": principal.name})
    return ActionResponse(
        workflow_id=workflow_id,
        status="rejected",
        message=f"Rejected EDA code v{run.eda_version}; it will be regenerated with your feedback.",
        run=run,
    )


@router.post(
    "/workflow/{workflow_id}/cancel",
    response_model=ActionResponse,
    tags=["runs"],
    responses=ERROR_RESPONSES,
)
async def cancel_run(request: Request, principal: Operator, workflow_id: str) -> ActionResponse:
    """Ask the run to stop; it records `cancelled` once its current step is interrupted."""
    await _runs(request).cancel(workflow_id, principal)
    logger.info("Run cancellation requested", extra={"workflow_id": workflow_id})
    return ActionResponse(
        workflow_id=workflow_id, status="cancelling", message="Cancellation requested."
    )


@router.get(
    "/workflow/{workflow_id}/artifacts",
    response_model=ArtifactList,
    tags=["artifacts"],
    responses=ERROR_RESPONSES,
)
async def list_artifacts(request: Request, principal: Viewer, workflow_id: str) -> ArtifactList:
    """Everything the run produced so far: code per version, logs, metrics, the model."""
    await _runs(request).ensure_exists(workflow_id, principal)
    store: ArtifactStore = request.app.state.artifacts
    refs = await asyncio.to_thread(store.list, workflow_id)
    return ArtifactList(
        workflow_id=workflow_id,
        artifacts=[
            ArtifactEntry(
                **ref.model_dump(),
                url=str(
                    request.url_for("download_artifact", workflow_id=workflow_id, name=ref.name)
                ),
            )
            for ref in refs
        ],
    )


@router.get(
    "/workflow/{workflow_id}/artifacts/{name:path}",
    tags=["artifacts"],
    response_class=FileResponse,
    responses=ERROR_RESPONSES,
)
async def download_artifact(
    request: Request, principal: Viewer, workflow_id: str, name: str
) -> Response:
    """One artifact, served with its content type; plots, the report and text open inline.

    With STORAGE_PRESIGN_DOWNLOADS and object storage, a 307 to a short-lived URL instead.
    """
    await _runs(request).ensure_exists(workflow_id, principal)
    store: ArtifactStore = request.app.state.artifacts
    settings: Settings = request.app.state.settings
    try:
        # Generated code wrote these files: a report must not run script in the API's origin.
        return await artifact_response(
            store, workflow_id, name, presign=settings.storage_presign_downloads
        )
    except ArtifactNotFound as err:
        raise RunNotFound(f"Run {workflow_id!r} has no artifact named {name!r}.") from err


@router.get(
    "/workflows", response_model=RunList, tags=["runs"], responses=error_responses(*GUARDED, 400)
)
async def list_runs(
    request: Request,
    principal: Viewer,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: str | None = None,
    owner: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only runs started by this principal; `me` is the caller.",
        ),
    ] = None,
) -> RunList:
    """Runs from Temporal visibility, filtered by status and owner if given.

    Admins see every run; others see their own, and approvers also every run awaiting approval.
    Open runs come first, newest first; then finished runs, most recently finished first.
    """
    return await _runs(request).list_runs(status, limit, page_token, principal, owner)


@router.get(
    "/health",
    response_model=Health,
    tags=["service"],
    responses={
        503: {"model": Health, "description": "Temporal is unreachable"},
        **error_responses(429),
    },
    dependencies=[Depends(limit_by_address)],  # open to load balancers, but not unlimited
)
async def health(request: Request) -> Health | JSONResponse:
    """Whether Temporal is reachable: 200 when it is, 503 when it is not."""
    settings: Settings = request.app.state.settings
    report = Health(
        status="healthy",
        temporal="reachable",
        namespace=settings.temporal_namespace,
        task_queue=settings.temporal_task_queue,
    )
    try:
        await _runs(request).check_health()
    except (ApiError, RPCError, RuntimeError, OSError) as err:
        report.status, report.temporal = "unhealthy", "unreachable"
        report.detail = f"Temporal at {settings.temporal_address}: {err}"
        return JSONResponse(report.model_dump(), status_code=503)
    return report


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # /docs and /redoc from assets shipped in the fastapi-offline package, not from a CDN.
    app = FastAPIOffline(
        title="Orchestrator Service",
        description="Durable Auto-DataScientist runs on Temporal, with a human approval step.",
        version="0.1.0",
        lifespan=refuse_insecure_bind,
    )
    app.state.settings = settings
    # Bad auth or rate-limit settings stop the API here, at start-up, with a clear message.
    app.state.access = AccessControl.from_settings(settings)
    app.state.runs = RunService(TemporalGateway(settings))
    # Uploads go to, and artifacts come from, the workers' storage: DATA_DIR when it is a shared
    # folder, or object storage (STORAGE_URL), where the API needs no disk of theirs.
    app.state.storage = storage_from_settings(settings)
    app.state.artifacts = ArtifactStore(app.state.storage, ARTIFACTS_PREFIX)
    # One poller per watched run per process, however many clients follow its events.
    app.state.events = EventHub(
        lambda workflow_id: app.state.runs.state(workflow_id),
        lambda workflow_id: asyncio.to_thread(app.state.artifacts.list, workflow_id),
        settings.events_poll_seconds,
    )
    install_error_handlers(app)
    document_errors_everywhere(app)
    app.include_router(router)
    app.include_router(predict_router)
    app.include_router(datasets_router)
    install_codec_endpoint(app, settings)
    app.include_router(events_router)
    install_desk(app, settings)
    install_observability(app, settings)  # /metrics, /health/live, /health/ready, tracing
    return app


def _app_from_environment() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level)
    configure_tracing(API_SERVICE)
    instrument_httpx()
    return create_app(settings)


app = _app_from_environment()
