"""The activity interceptor counts retries, failures and LLM spend, including failed calls'.

Each step runs in Temporal's ActivityEnvironment with a real SDK runtime whose metrics land in
a buffer, so what is asserted is what the worker's Prometheus exporter would publish.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, MetricBufferDurationFormat, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor

from activities.telemetry import ActivityTelemetryInterceptor, record_execution
from tests.fake_team import USAGE
from workflows.models import ResearchOutcome, ResearchPlan

PLAN = ResearchPlan(steps=["profile"], target="Churn", task_type="classification")


class Buffered:
    """An activity environment whose metric meter records into a buffer we can read."""

    def __init__(self, attempt: int = 1) -> None:
        self.buffer = MetricBuffer(10_000, duration_format=MetricBufferDurationFormat.SECONDS)
        runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))
        self.env = ActivityEnvironment()
        self.env.metric_meter = runtime.metric_meter
        self.env.info = dataclasses.replace(self.env.info, attempt=attempt)
        self.updates: list[Any] = []

    def total(self, name: str, **labels: str) -> float:
        self.updates.extend(self.buffer.retrieve_updates())
        return sum(
            update.value
            for update in self.updates
            if update.metric.name == name and labels.items() <= dict(update.attributes).items()
        )

    def count(self, name: str, **labels: str) -> int:
        self.updates.extend(self.buffer.retrieve_updates())
        return sum(
            1
            for update in self.updates
            if update.metric.name == name and labels.items() <= dict(update.attributes).items()
        )


class Step(ActivityInboundInterceptor):
    """Stands for the activity itself: returns or raises what the test says."""

    def __init__(self, outcome: Any) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.outcome = outcome

    async def execute_activity(self, input: Any) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


async def measured(metrics: Buffered, outcome: Any) -> Any:
    intercepted = ActivityTelemetryInterceptor().intercept_activity(Step(outcome))
    return await metrics.env.run(intercepted.execute_activity, None)


async def test_a_successful_agent_step_records_its_duration_and_its_llm_usage():
    metrics = Buffered()
    result = ResearchOutcome(plan=PLAN, usage=USAGE)
    assert await measured(metrics, result) is result

    assert metrics.count("orchestrator_step_duration_seconds", outcome="succeeded") == 1
    assert metrics.total("orchestrator_step_retries") == 0
    tokens = {"provider": "fake", "model": "fake-1"}
    assert metrics.total("orchestrator_llm_tokens", direction="input", **tokens) == 10
    assert metrics.total("orchestrator_llm_tokens", direction="output", **tokens) == 5
    assert metrics.total("orchestrator_llm_cost_usd", **tokens) == pytest.approx(0.001)


async def test_a_retried_attempt_that_fails_counts_the_retry_the_failure_and_the_tokens():
    metrics = Buffered(attempt=2)
    error = ApplicationError("rate limited", USAGE.model_dump(), type="LlmTransientError")
    with pytest.raises(ApplicationError):
        await measured(metrics, error)

    assert metrics.total("orchestrator_step_retries") == 1
    assert metrics.total("orchestrator_step_failures", error_type="LlmTransientError") == 1
    assert metrics.count("orchestrator_step_duration_seconds", outcome="failed") == 1
    # The failed call was paid for: its usage, attached as the error's detail, is counted.
    assert metrics.total("orchestrator_llm_tokens", direction="input") == 10


async def test_a_cancelled_step_is_no_failure():
    metrics = Buffered()
    with pytest.raises(asyncio.CancelledError):
        await measured(metrics, asyncio.CancelledError())

    assert metrics.count("orchestrator_step_duration_seconds", outcome="cancelled") == 1
    assert metrics.total("orchestrator_step_failures") == 0


@pytest.mark.parametrize(
    ("backend", "exit_code", "limit", "labels"),
    [
        ("local", 0, None, {"backend": "local", "outcome": "succeeded", "limit": "none"}),
        ("local", 1, None, {"backend": "local", "outcome": "failed", "limit": "none"}),
        ("local", -9, "memory", {"outcome": "limit_exceeded", "limit": "memory"}),
        (
            "http://user:pw@ml-worker:9000/train",
            -1,
            "wall_clock",
            {"backend": "remote", "outcome": "limit_exceeded", "limit": "wall_clock"},
        ),
    ],
)
def test_executions_are_counted_by_backend_outcome_and_limit(
    backend: str, exit_code: int, limit: str | None, labels: dict[str, str]
):
    metrics = Buffered()
    metrics.env.run(record_execution, backend, exit_code, limit)
    assert metrics.total("orchestrator_sandbox_executions", **labels) == 1
    # A remote backend's URL (which may carry credentials) never becomes a label value.
    assert all("ml-worker" not in str(u.attributes) for u in metrics.updates)


def test_recording_outside_an_activity_does_nothing():
    record_execution("local", 0, None)  # plain unit tests call the executors directly
