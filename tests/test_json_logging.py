"""Log lines are JSON with the spec's fields, and carry the run's id wherever there is one."""

from __future__ import annotations

import json
import logging
import sys

from json_logging import JsonFormatter


def format_record(**extra: object) -> dict[str, object]:
    record = logging.LogRecord(
        "orchestrator", logging.INFO, __file__, 1, "Workflow %s", ("started",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return dict(json.loads(JsonFormatter().format(record)))


def test_line_has_the_spec_fields_and_extras():
    line = format_record(workflow_id="wf-abc123", user_goal="Build churn model")
    assert line["level"] == "INFO"
    assert line["logger"] == "orchestrator"
    assert line["message"] == "Workflow started"
    assert line["workflow_id"] == "wf-abc123"
    assert line["user_goal"] == "Build churn model"
    assert str(line["timestamp"]).endswith("Z") and "T" in str(line["timestamp"])


def test_temporal_activity_context_becomes_workflow_id():
    line = format_record(
        temporal_activity={"workflow_id": "wf-xyz", "activity_type": "train_model", "attempt": 2}
    )
    assert line["workflow_id"] == "wf-xyz"
    assert line["activity_type"] == "train_model"
    assert line["attempt"] == 2
    assert "temporal_activity" not in line


def test_exceptions_are_kept_in_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exception"]
