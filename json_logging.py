"""Structured JSON logs with the spec's fields: timestamp, level, logger, message, workflow_id,
and the trace_id and span_id of the OpenTelemetry span active when the line was written."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from opentelemetry import trace

# Attributes every LogRecord has; anything else passed through `extra=` is a field of the line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_NOISE = {"color_message"}  # uvicorn's ANSI-coloured duplicate of the message


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _NOISE and not key.startswith("_"):
                line[key] = value
        # Temporal's loggers attach the run's identity as `temporal_workflow` / `temporal_activity`.
        for context_key in ("temporal_workflow", "temporal_activity"):
            context = line.pop(context_key, None)
            if isinstance(context, dict) and "workflow_id" in context:
                line.setdefault("workflow_id", context["workflow_id"])
                for extra_key in ("activity_type", "attempt", "workflow_type"):
                    if extra_key in context:
                        line.setdefault(extra_key, context[extra_key])
        # Ties the line to its trace in Jaeger, and the API's lines to the worker's for one run.
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line["trace_id"] = trace.format_trace_id(span_context.trace_id)
            line["span_id"] = trace.format_span_id(span_context.span_id)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route its lines through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if name == "uvicorn.access" and not logger.handlers and not logger.propagate:
            continue  # `uvicorn --no-access-log` turned it off before importing the app
        logger.handlers[:] = []
        logger.propagate = True
