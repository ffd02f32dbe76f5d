"""Activity-side metrics: every step's duration, retries and failures, the LLM tokens and cost
the agents spent, and what the sandbox and remote executors did; and the span of each LLM call.

All of it goes through `activity.metric_meter()`, so it reaches the same Prometheus endpoint as
the Temporal SDK's own metrics, labelled with the activity type, namespace and task queue.
Outside an activity (plain unit tests) the recording functions do nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, is_cancelled_exception
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from workflows.models import LlmUsage

STEP_DURATION = "orchestrator_step_duration_seconds"
STEP_RETRIES = "orchestrator_step_retries"
STEP_FAILURES = "orchestrator_step_failures"
LLM_TOKENS = "orchestrator_llm_tokens"
LLM_COST = "orchestrator_llm_cost_usd"
SANDBOX_EXECUTIONS = "orchestrator_sandbox_executions"

# Steps last from milliseconds (an offline agent) to the 15-minute execution limit and beyond.
STEP_DURATION_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
)
_tracer = trace.get_tracer("orchestrator.llm")

# One agent call costs from nothing (offline) to a few dollars (a large model, long context).
LLM_COST_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)


def record_llm_usage(usage: LlmUsage) -> None:
    """Tokens and cost of one agent call, by provider and model; the activity type says which."""
    if not activity.in_activity():
        return
    meter = activity.metric_meter()
    labels = {"provider": usage.provider, "model": usage.model}
    tokens = meter.create_counter(LLM_TOKENS, "LLM tokens, by provider, model and direction.")
    tokens.add(usage.input_tokens, {**labels, "direction": "input"})
    tokens.add(usage.output_tokens, {**labels, "direction": "output"})
    if usage.cost_usd is not None:
        # A histogram's _sum is the running spend; its buckets show what single calls cost.
        meter.create_histogram_float(LLM_COST, "Estimated USD cost per agent call.", "USD").record(
            usage.cost_usd, labels
        )


@contextmanager
def llm_call_span(provider: str, model: str, agent: str) -> Iterator[trace.Span]:
    """A span around one model round trip, named and labelled by the OpenTelemetry GenAI
    conventions. The LLM SDKs speak through their own HTTP clients (httpx2), which the httpx
    instrumentation does not see, so the call is traced here, where every provider passes."""
    with _tracer.start_as_current_span(
        f"chat {model}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.agent.name": agent,
        },
    ) as span:
        yield span


def record_execution(backend: str, exit_code: int, limit: str | None) -> None:
    """One run of generated code. `limit` names the resource limit that ended it, if one did
    (a sandbox LimitExceeded value such as "wall_clock" or "memory")."""
    if not activity.in_activity():
        return
    outcome = "limit_exceeded" if limit else "succeeded" if exit_code == 0 else "failed"
    activity.metric_meter().create_counter(
        SANDBOX_EXECUTIONS, "Generated-code executions, by backend, outcome and limit."
    ).add(
        1,
        {
            # Remote backends are URLs; the label keeps only their kind.
            "backend": "local" if backend == "local" else "remote",
            "outcome": outcome,
            "limit": str(limit) if limit else "none",
        },
    )


class ActivityTelemetryInterceptor(Interceptor):
    """Times every activity attempt and accounts the LLM usage its result or error carries."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _MeasuredActivity(next)


class _MeasuredActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        meter = activity.metric_meter()
        if activity.info().attempt > 1:
            meter.create_counter(STEP_RETRIES, "Step attempts after the first.").add(1)
        started = time.monotonic()
        outcome = "succeeded"
        try:
            result = await super().execute_activity(input)
        except BaseException as err:
            outcome = "cancelled" if is_cancelled_exception(err) else "failed"
            if outcome == "failed":
                meter.create_counter(STEP_FAILURES, "Failed step attempts, by error type.").add(
                    1, {"error_type": _error_type(err)}
                )
                if (usage := _usage_of_failure(err)) is not None:
                    record_llm_usage(usage)  # a failed call's tokens were still paid for
            raise
        else:
            # Every agent outcome (research, code, review) carries the usage of its call.
            usage = getattr(result, "usage", None)
            if isinstance(usage, LlmUsage):
                record_llm_usage(usage)
            return result
        finally:
            meter.create_histogram_float(
                STEP_DURATION, "Wall time of one step attempt, by outcome.", "s"
            ).record(time.monotonic() - started, {"outcome": outcome})


def _error_type(err: BaseException) -> str:
    if isinstance(err, ApplicationError) and err.type:
        return err.type
    return type(err).__name__


def _usage_of_failure(err: BaseException) -> LlmUsage | None:
    """The providers attach what a failed call cost as the error's first detail."""
    if not isinstance(err, ApplicationError) or not err.details:
        return None
    try:
        return LlmUsage.model_validate(err.details[0])
    except ValidationError:
        return None
