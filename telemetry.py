"""Tracing for the API and the worker: one OpenTelemetry tracer provider per process.

Spans are exported over OTLP when the standard variables say where: OTEL_EXPORTER_OTLP_ENDPOINT
(or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), with OTEL_EXPORTER_OTLP_PROTOCOL `http/protobuf` (the
default) or `grpc`. The exporter reads these, and the headers and certificates that go with
them, itself; that is why they are not Settings fields. Without an endpoint, spans are still
made, so the JSON logs carry trace ids that tie the API's lines to the worker's.
OTEL_SDK_DISABLED=true turns tracing off altogether.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

logger = logging.getLogger("orchestrator.telemetry")

API_SERVICE = "orchestrator-api"
WORKER_SERVICE = "orchestrator-worker"


def tracing_disabled() -> bool:
    """OTEL_SDK_DISABLED=true, the standard switch, turns every part of tracing off."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def configure_tracing(
    service_name: str, extra_processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Install the process's tracer provider once; later calls return the one installed.

    `extra_processor` lets a test see the spans (an in-memory exporter) beside any OTLP export.
    """
    if tracing_disabled():
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        if extra_processor is not None:
            current.add_span_processor(extra_processor)
        return current
    # OTEL_SERVICE_NAME, when set, names the service (Resource.create reads it).
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter = _otlp_exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    trace.set_tracer_provider(provider)
    return provider


def instrument_httpx() -> None:
    """Trace every outgoing httpx request: the LLM SDKs, remote executors, datasets, webhooks."""
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def tracing_interceptors() -> list[ClientInterceptor]:
    """For Client.connect: carries the trace from a start or update call into the workflow and
    its activities. A worker built on such a client uses it too (its worker half). None when
    tracing is off: then no trace headers ride along with every activity."""
    return [] if tracing_disabled() else [TracingInterceptor()]


def _otlp_exporter() -> SpanExporter | None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    else:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use 'http/protobuf' "
            "or 'grpc'"
        )
    logger.info("Exporting traces over OTLP", extra={"endpoint": endpoint, "protocol": protocol})
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter
