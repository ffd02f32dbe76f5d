"""One trace follows a run from the REST call through the workflow to every activity, the LLM
call and the executor request; log lines carry the active span's ids.

In-process, so an in-memory exporter sees every span: the real API app (create_app, with its
FastAPI instrumentation and its Temporal client's TracingInterceptor) over ASGI, and a worker on
the dev server with the TracingInterceptor. The research agent asks the OpenAI SDK, pointed at
the local stand-in (the provider layer traces each model call); the EDA code goes to the Browser Agent stand-in over HTTP; the other steps
are the scriptable FakeTeam.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.artifacts import ArtifactStore
from activities.executors import ExecutionActivities, RemoteExecutor
from activities.llm.openai_provider import OpenAIProvider
from activities.telemetry import ActivityTelemetryInterceptor
from api.main import create_app
from json_logging import JsonFormatter
from settings import Settings
from telemetry import configure_tracing, instrument_httpx, tracing_interceptors
from tests.fake_team import FakeTeam
from tests.llm_standin import FakeLlmServer, openai_ok
from tests.standins import ExecutorState, ServerThread, browser_agent_app
from worker import workflow_runner
from workflows.contract import ActivityName
from workflows.data_science_run import DataScienceRun
from workflows.models import (
    AgentContext,
    DatasetInfo,
    DatasetRequest,
    ResearchOutcome,
    ResearchPlan,
)

pytestmark = pytest.mark.integration

PLAN = ResearchPlan(
    steps=["profile", "clean", "model", "evaluate"], target="Churn", task_type="classification"
)


@pytest.fixture(scope="module")
def spans() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = configure_tracing("orchestrator-test", SimpleSpanProcessor(exporter))
    assert provider is not None, "tracing is off (OTEL_SDK_DISABLED?)"
    instrument_httpx()
    try:
        yield exporter, provider
    finally:
        HTTPXClientInstrumentor().uninstrument()
        exporter.shutdown()  # the provider stays installed; later spans are dropped


class TracedTeam(FakeTeam):
    """FakeTeam with a real dataset file and a research agent that asks a (stand-in) LLM."""

    def __init__(self, dataset: Path, llm: FakeLlmServer) -> None:
        super().__init__()
        self.dataset = dataset
        self.provider = OpenAIProvider(
            model="gpt-4o-mini", api_key="sk-test-tracing", base_url=f"{llm.url}/v1"
        )

    @activity.defn(name=ActivityName.FETCH_DATASET)
    async def fetch_dataset(self, request: DatasetRequest) -> DatasetInfo:
        info = await super().fetch_dataset(request)
        return info.model_copy(update={"file_path": str(self.dataset)})

    @activity.defn(name=ActivityName.RESEARCH)
    async def research(self, ctx: AgentContext) -> ResearchOutcome:
        plan, usage = await self.provider.generate(
            system="You plan data-science work.", user=ctx.user_goal, output_model=ResearchPlan
        )
        return ResearchOutcome(plan=plan, usage=usage)


@pytest.fixture
async def worker_and_api(
    spans: tuple[InMemorySpanExporter, TracerProvider],
    dev_server_env: WorkflowEnvironment,
    llm: FakeLlmServer,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    address = dev_server_env.client.service_client.config.target_host
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    dataset = tmp_path / "churn.csv"
    dataset.write_text("tenure,Churn\n1,Yes\n20,No\n3,Yes\n")
    settings = Settings(
        temporal_address=address, temporal_task_queue=task_queue, data_dir=tmp_path / "data"
    )
    team = TracedTeam(dataset, llm)
    client = await Client.connect(
        address, data_converter=pydantic_data_converter, interceptors=tracing_interceptors()
    )
    with ServerThread(browser_agent_app(ExecutorState())) as browser_agent:
        executions = ExecutionActivities(
            settings,
            ArtifactStore(settings.artifacts_dir),
            eda_executor=RemoteExecutor(browser_agent.url, "/execute", timeout_seconds=30),
        )
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[DataScienceRun],
            activities=[
                team.fetch_dataset,
                team.research,
                team.data_engineering,
                executions.execute_eda,
                team.ml,
                team.train_model,
                team.critic,
            ],
            workflow_runner=workflow_runner(),
            interceptors=[ActivityTelemetryInterceptor()],
        )
        app = create_app(settings)
        async with worker:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                yield api


async def test_one_trace_spans_the_rest_call_workflow_activities_llm_and_executor(
    spans: tuple[InMemorySpanExporter, TracerProvider],
    worker_and_api: httpx.AsyncClient,
    llm: FakeLlmServer,
):
    exporter, provider = spans
    exporter.clear()
    llm.enqueue(openai_ok(PLAN.model_dump_json()))
    api = worker_and_api

    started = await api.post(
        "/workflow/start",
        json={"user_goal": "Predict churn", "dataset_url": "https://example.com/churn.csv"},
    )
    assert started.status_code == 200, started.text
    workflow_id = started.json()["workflow_id"]
    await wait_for_status(api, workflow_id, "awaiting_approval")
    approved = await api.post(f"/workflow/{workflow_id}/approve")
    assert approved.status_code == 200, approved.text
    await wait_for_status(api, workflow_id, "completed")
    provider.force_flush()

    finished = exporter.get_finished_spans()
    request = one(finished, "POST /workflow/start", kind=trace.SpanKind.SERVER)
    in_trace = [s for s in finished if s.context.trace_id == request.context.trace_id]
    names = {s.name for s in in_trace}
    for expected in (
        "StartWorkflow:DataScienceRun",
        "RunWorkflow:DataScienceRun",
        "StartActivity:research_agent",
        "RunActivity:fetch_dataset",
        "RunActivity:research_agent",
        "RunActivity:data_engineering_agent",
        # After the approval, still the run's trace: the workflow carries it, not the caller.
        "RunActivity:execute_eda",
        "RunActivity:ml_agent",
        "RunActivity:train_model",
        "RunActivity:critic_agent",
    ):
        assert expected in names, f"{expected} not in the request's trace: {sorted(names)}"

    assert not [s.name for s in in_trace if s.name.endswith(("http send", "http receive"))]

    by_id = {s.context.span_id: s for s in in_trace}
    llm_call = one(tuple(in_trace), "chat gpt-4o-mini", kind=trace.SpanKind.CLIENT)
    assert llm_call.attributes is not None
    assert llm_call.attributes["gen_ai.provider.name"] == "openai"
    assert llm_call.attributes["gen_ai.usage.input_tokens"] == 100
    assert ancestor_names(llm_call, by_id)[:1] == ["RunActivity:research_agent"]
    assert "POST /workflow/start" in ancestor_names(llm_call, by_id)
    executor_call = outgoing_request_to(in_trace, "/execute")
    assert ancestor_names(executor_call, by_id)[:1] == ["RunActivity:execute_eda"]
    assert ancestor_names(executor_call, by_id)[-2:] == [
        "StartWorkflow:DataScienceRun",
        "POST /workflow/start",
    ]

    # The approval is a trace of its own, from its request to the workflow's update handler.
    approval = one(finished, "POST /workflow/{workflow_id}/approve", kind=trace.SpanKind.SERVER)
    approval_names = {s.name for s in finished if s.context.trace_id == approval.context.trace_id}
    assert any(name.startswith("StartWorkflowUpdate:") for name in approval_names), approval_names


def test_log_lines_carry_the_active_span_ids(spans: tuple[InMemorySpanExporter, TracerProvider]):
    _, provider = spans
    formatter = JsonFormatter()
    record = logging.LogRecord("orchestrator.test", logging.INFO, __file__, 1, "hi", None, None)
    assert "trace_id" not in json.loads(formatter.format(record))
    with provider.get_tracer("test").start_as_current_span("step") as span:
        line = json.loads(formatter.format(record))
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


async def wait_for_status(api: httpx.AsyncClient, workflow_id: str, status: str) -> None:
    body: dict[str, object] = {}
    for _ in range(300):
        response = await api.get(f"/workflow/{workflow_id}/status")
        body = response.json()
        if body.get("status") == status:
            return
        assert body.get("status") not in ("failed", "cancelled", "timed_out"), body
        await asyncio.sleep(0.1)
    raise AssertionError(f"run never reached {status}: {body}")


def one(spans: tuple[ReadableSpan, ...], name: str, kind: trace.SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind == kind]
    assert len(found) == 1, (name, sorted(s.name for s in spans))
    return found[0]


def outgoing_request_to(spans: list[ReadableSpan], url_part: str) -> ReadableSpan:
    found = [
        s
        for s in spans
        if s.kind == trace.SpanKind.CLIENT
        and url_part
        in str((s.attributes or {}).get("url.full", (s.attributes or {}).get("http.url", "")))
    ]
    assert found, f"no traced HTTP request to {url_part}"
    return found[0]


def ancestor_names(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        ancestor = by_id[parent.span_id]
        names.append(ancestor.name)
        parent = ancestor.parent
    return names
