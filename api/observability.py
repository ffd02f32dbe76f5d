"""The API's metrics, health probes and tracing: `/metrics`, `/health/live`, `/health/ready`.

HTTP requests are counted and timed by route template (`/workflow/{workflow_id}/status`, never
the raw path, so run ids do not multiply the series). Runs awaiting approval are counted by
Temporal visibility when Prometheus scrapes, at most every few seconds: every replica reports
the same cluster-wide number, so dashboards take its max. Requests are traced with
OpenTelemetry; the Temporal client carries the trace into the workflow (api/runs.py).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Generic, TypeVar

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics
from pydantic import BaseModel
from temporalio.service import RPCError

from api.errors import ApiError, Unauthorized
from api.runs import RunService
from api.schemas import Health
from settings import Settings
from workflows.models import RunStatus

probes = APIRouter(tags=["service"])
metrics_route = APIRouter()
T = TypeVar("T")

APPROVAL_COUNT_SECONDS = 5.0  # visibility is asked at most this often, however many scrapes
READINESS_CACHE_SECONDS = 1.0  # bounds the Temporal calls that probes can cause
HTTP_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_PROBE_PATHS = ("/metrics", "/health/live", "/health/ready")


class Liveness(BaseModel):
    status: str = "alive"


class _Cached(Generic[T]):
    """One value, refreshed by an async function when older than `seconds`; callers that
    arrive during a refresh wait for it and share it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = -math.inf
        self._value: T | None = None
        self._lock = asyncio.Lock()

    async def get(self, refresh: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.seconds:
                self._value = await refresh()
                self._at = time.monotonic()
            return self._value


class ApiMetrics:
    """The API's registry: HTTP metrics, process metrics and the approval backlog gauge."""

    def __init__(self, runs: RunService) -> None:
        self.runs = runs
        # A registry per app, so apps built in one process (tests) do not share series.
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.awaiting_approval = Gauge(
            "orchestrator_runs_awaiting_approval",
            "Open runs waiting for a human decision, from Temporal visibility (NaN when it "
            "cannot be asked).",
            registry=self.registry,
        )
        self._count: _Cached[float] = _Cached(APPROVAL_COUNT_SECONDS)

    def instrument(self, app: FastAPI) -> None:
        Instrumentator(
            should_group_status_codes=False,  # 404 and 409 tell different stories
            excluded_handlers=["^/metrics$"],
            registry=self.registry,
        ).add(
            http_metrics.requests(registry=self.registry),
            http_metrics.latency(registry=self.registry, buckets=HTTP_LATENCY_BUCKETS),
        ).instrument(app)

    async def exposition(self) -> bytes:
        self.awaiting_approval.set(await self._count.get(self._count_awaiting_approval))
        return generate_latest(self.registry)

    async def _count_awaiting_approval(self) -> float:
        try:
            client = await self.runs.gateway.client()
            result = await client.count_workflows(
                self.runs.own_runs_query(RunStatus.AWAITING_APPROVAL),
                rpc_timeout=timedelta(seconds=3),
            )
        except (ApiError, RPCError, RuntimeError):
            return math.nan  # unknown, not zero: a gap on the dashboard, not a false calm
        return float(result.count)


@metrics_route.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text format; with METRICS_TOKEN set, only for `Bearer <token>`."""
    settings: Settings = request.app.state.settings
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if token:  # an empty METRICS_TOKEN= in .env means none, not "Bearer " with nothing
        expected = f"Bearer {token}"
        if authorization is None or not secrets.compare_digest(
            authorization.encode(), expected.encode()
        ):
            raise Unauthorized(
                "Metrics need 'Authorization: Bearer <METRICS_TOKEN>'.",
                headers={"WWW-Authenticate": "Bearer"},
            )
    api_metrics: ApiMetrics = request.app.state.metrics
    return Response(await api_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@probes.get("/health/live", response_model=Liveness)
async def live() -> Liveness:
    """The process is up and serving; says nothing about Temporal."""
    return Liveness()


@probes.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "Temporal is unreachable"}},
)
async def ready(request: Request) -> Health | JSONResponse:
    """200 when Temporal answers for our namespace, 503 when it does not: take the API out of
    the load balancer then, but do not restart it."""
    readiness: _Cached[Health] = request.app.state.readiness
    report = await readiness.get(lambda: _check_ready(request))
    if report.status != "ready":
        return JSONResponse(report.model_dump(), status_code=503)
    return report


async def _check_ready(request: Request) -> Health:
    settings: Settings = request.app.state.settings
    runs: RunService = request.app.state.runs
    report = Health(
        status="ready",
        temporal="reachable",
        namespace=settings.temporal_namespace,
        task_queue=settings.temporal_task_queue,
    )
    try:
        await runs.check_health()
    except (ApiError, RPCError, RuntimeError, OSError) as err:
        report.status, report.temporal = "not_ready", "unreachable"
        report.detail = f"Temporal at {settings.temporal_address}: {err}"
    return report


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Metrics (unless METRICS_ENABLED=false), the probes, and request tracing."""
    app.state.readiness = _Cached[Health](READINESS_CACHE_SECONDS)
    app.include_router(probes)
    if settings.metrics_enabled:
        api_metrics = ApiMetrics(app.state.runs)
        api_metrics.instrument(app)
        app.state.metrics = api_metrics
        app.include_router(metrics_route)
    # Probes and scrapes every few seconds would bury the traces worth reading; the ASGI
    # send/receive spans (two more per request) say nothing the request's own span does not.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=",".join(_PROBE_PATHS), exclude_spans=["receive", "send"]
    )
