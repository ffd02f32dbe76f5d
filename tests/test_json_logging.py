"""Log lines are JSON with the spec's fields, and carry the run's id wherever there is one."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from json_logging import JsonFormatter
from tests.conftest import ROOT, free_port


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


def _access_lines(tmp_path: Path, *flags: str) -> list[dict[str, object]]:
    """The uvicorn.access lines a real API process writes for one request."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "DATA_DIR": str(tmp_path / "data"),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing listens: /health/live needs none
    }
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port), *flags],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "uvicorn.access"]


def test_the_access_log_is_json_and_no_access_log_turns_it_off(tmp_path: Path) -> None:
    logged = _access_lines(tmp_path)
    silent = _access_lines(tmp_path, "--no-access-log")

    assert any("/health/live" in str(line["message"]) for line in logged), logged
    assert silent == []
