"""The REST API: thin routes that hand each request to RunService.

Run it with `uvicorn api.main:app` (settings from the environment and `.env`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from temporalio.service import RPCError

from activities.artifacts import ArtifactNotFound, ArtifactStore, content_type_for
from api.errors import ApiError, RunNotFound, install_error_handlers
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
from json_logging import configure_logging
from settings import Settings
from workflows.models import RunState, RunStatus, RunStatusView

logger = logging.getLogger("orchestrator.api")
router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"description": "No run with this id"},
    409: {"description": "The run is not in a state that allows this"},
    503: {"description": "Temporal or the worker is not answering"},
}


def _runs(request: Request) -> RunService:
    service: RunService = request.app.state.runs
    return service


@router.post(
    "/workflow/start", response_model=StartResponse, tags=["runs"], responses=ERROR_RESPONSES
)
async def start_run(
    request: Request,
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
    existing = await _runs(request).start(body.user_goal, body.dataset_url, workflow_id)
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
async def run_status(request: Request, workflow_id: str) -> RunStatusView:
    """The spec's status document; works for finished runs too."""
    return (await _runs(request).state(workflow_id)).status_view()


@router.get(
    "/workflow/{workflow_id}", response_model=RunState, tags=["runs"], responses=ERROR_RESPONSES
)
async def run_state(request: Request, workflow_id: str) -> RunState:
    """The full state: plan, generated code, execution results, review feedback, usage."""
    return await _runs(request).state(workflow_id)


@router.post(
    "/workflow/{workflow_id}/approve",
    response_model=ActionResponse,
    tags=["approval"],
    responses=ERROR_RESPONSES,
)
async def approve_run(
    request: Request,
    workflow_id: str,
    body: Annotated[ApproveRequest | None, Body()] = None,
) -> ActionResponse:
    """Approve the generated EDA code so the run executes it."""
    await _runs(request).approve(workflow_id, body.version if body else None)
    logger.info("Run approved", extra={"workflow_id": workflow_id})
    return ActionResponse(
        workflow_id=workflow_id, status="approved", message="Approval sent; the run continues."
    )


@router.post(
    "/workflow/{workflow_id}/reject",
    response_model=ActionResponse,
    tags=["approval"],
    responses=ERROR_RESPONSES,
)
async def reject_run(
    request: Request,
    workflow_id: str,
    body: Annotated[RejectRequest | None, Body()] = None,
) -> ActionResponse:
    """Reject the EDA code; the Data Engineering agent regenerates it with the feedback."""
    feedback = body.feedback if body else None
    await _runs(request).reject(workflow_id, feedback, body.version if body else None)
    logger.info("Run rejected", extra={"workflow_id": workflow_id, "feedback": feedback})
    return ActionResponse(
        workflow_id=workflow_id,
        status="rejected",
        message="Rejection sent; the EDA code will be regenerated with your feedback.",
    )


@router.post(
    "/workflow/{workflow_id}/cancel",
    response_model=ActionResponse,
    tags=["runs"],
    responses=ERROR_RESPONSES,
)
async def cancel_run(request: Request, workflow_id: str) -> ActionResponse:
    """Ask the run to stop; it records `cancelled` once its current step is interrupted."""
    await _runs(request).cancel(workflow_id)
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
async def list_artifacts(request: Request, workflow_id: str) -> ArtifactList:
    """Everything the run produced so far: code per version, logs, metrics, the model."""
    await _runs(request).ensure_exists(workflow_id)
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
    responses={404: {"description": "No such artifact"}},
)
async def download_artifact(request: Request, workflow_id: str, name: str) -> FileResponse:
    """One artifact, served with its content type."""
    store: ArtifactStore = request.app.state.artifacts
    try:
        path = await asyncio.to_thread(store.resolve, workflow_id, name)
    except ArtifactNotFound as err:
        raise RunNotFound(f"Run {workflow_id!r} has no artifact named {name!r}.") from err
    return FileResponse(path, media_type=content_type_for(name), filename=path.name)


@router.get("/workflows", response_model=RunList, tags=["runs"])
async def list_runs(
    request: Request,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: str | None = None,
) -> RunList:
    """Runs from Temporal visibility, filtered by status if given.

    Open runs come first, newest first; then finished runs, most recently finished first.
    """
    return await _runs(request).list_runs(status, limit, page_token)


@router.get(
    "/health",
    response_model=Health,
    tags=["service"],
    responses={503: {"model": Health, "description": "Temporal is unreachable"}},
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
    app = FastAPI(
        title="Orchestrator Service",
        description="Durable Auto-DataScientist runs on Temporal, with a human approval step.",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.runs = RunService(TemporalGateway(settings))
    # Artifacts are files the worker wrote under DATA_DIR; the API must see the same folder.
    app.state.artifacts = ArtifactStore(settings.artifacts_dir)
    install_error_handlers(app)
    app.include_router(router)
    return app


def _app_from_environment() -> FastAPI:
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


app = _app_from_environment()
