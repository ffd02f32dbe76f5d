"""LLM failures in a real run show up, actionable and secret-free, in GET /workflow/{id}/status.

The real dev server, `python worker.py` and the API as subprocesses, with the agents backed by
the OpenAI provider pointed (OPENAI_BASE_URL) at a scripted local server.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEMPORAL_CLI, ServiceProcesses
from tests.llm_standin import FakeLlmServer, openai_error, openai_ok, service_using
from tests.sample_data import make_churn
from tests.test_service_integration import start, wait_until

pytestmark = pytest.mark.integration

API_KEY = "sk-test-not-a-real-key"
FINAL = ("completed", "failed", "cancelled", "timed_out")


@pytest.fixture(scope="module")
def llm_service(
    dev_server_env: WorkflowEnvironment,
    llm: FakeLlmServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcesses]:
    with service_using(
        llm,
        dev_server_env.client.service_client.config.target_host,
        tmp_path_factory.mktemp("llm-service-data"),
        OPENAI_API_KEY=API_KEY,
    ) as processes:
        yield processes


@pytest.fixture
def api(llm_service: ServiceProcesses, llm: FakeLlmServer) -> Iterator[httpx.Client]:
    llm.reset()
    with httpx.Client(base_url=llm_service.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("datasets") / "churn.csv"
    make_churn(rows=500).to_csv(path, index=False)
    return str(path)


def run_to_the_end(api: httpx.Client, dataset: str) -> tuple[str, httpx.Response, httpx.Response]:
    """Start a run, wait for a final status; the raw status and state responses."""
    workflow_id = start(api, dataset)
    wait_until(api, workflow_id, lambda body: body["status"] in FINAL, timeout=60)
    status = api.get(f"/workflow/{workflow_id}/status")
    state = api.get(f"/workflow/{workflow_id}")
    assert status.status_code == state.status_code == 200
    return workflow_id, status, state


def history_json(llm_service: ServiceProcesses, workflow_id: str) -> str:
    done = subprocess.run(
        [str(TEMPORAL_CLI), "workflow", "show", "--workflow-id", workflow_id,
         "--output", "json", "--address", llm_service.env["TEMPORAL_ADDRESS"]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def activity_attempts(history: str, activity: str) -> list[int]:
    """The attempt number recorded for each (finished) execution of an activity."""
    events: list[dict[str, Any]] = json.loads(history)["events"]
    scheduled = {
        e["eventId"]
        for e in events
        if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name")
        == activity
    }
    return [
        int(e["activityTaskStartedEventAttributes"]["attempt"])
        for e in events
        if e.get("activityTaskStartedEventAttributes", {}).get("scheduledEventId") in scheduled
    ]


def test_rejected_api_key_fails_the_run_at_research_with_an_actionable_secret_free_error(
    api: httpx.Client, llm: FakeLlmServer, llm_service: ServiceProcesses, churn_csv: str
) -> None:
    # Real APIs quote (part of) the key back; this one quotes it whole.
    llm.enqueue(
        openai_error(
            401,
            f"Incorrect API key provided: {API_KEY}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_api_key",
        )
    )
    workflow_id, status_response, state_response = run_to_the_end(api, churn_csv)

    status = status_response.json()
    assert status["status"] == "failed"
    assert status["current_step"] == "research_agent"
    assert status["research_plan_steps"] == 0
    error = status["last_error"]
    assert error.startswith("research_agent failed: ")
    assert "rejected the API key (401)" in error and "check OPENAI_API_KEY" in error
    assert "Incorrect API key provided" in error  # what the server said, minus the key

    # The key went to the server, and from nowhere back to the user.
    assert [r.path for r in llm.requests] == ["/v1/chat/completions"]  # one call, no retry
    assert llm.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    for text in (status_response.text, state_response.text):
        assert API_KEY not in text and "not-a-real-key" not in text
    state = state_response.json()
    assert state["last_error"] == error
    assert state["plan"] is None and state["usage_totals"]["calls"] == 0

    # Not retried: the one research attempt is the last, and the history holds no key either.
    history = history_json(llm_service, workflow_id)
    assert activity_attempts(history, "research_agent") == [1]
    assert "not-a-real-key" not in history
    assert "LlmConfigurationError" in history


PLAN = {
    "steps": ["Profile the data", "Impute and encode", "Train a classifier", "Evaluate it"],
    "target": "Churn",
    "task_type": "classification",
    "features": ["tenure", "Contract", "MonthlyCharges"],
    "excluded_columns": ["customerID"],
    "rationale": "The goal names churn; customerID identifies rows.",
}


def test_unknown_model_after_a_good_plan_fails_at_data_engineering_keeping_the_plan(
    api: httpx.Client, llm: FakeLlmServer, churn_csv: str
) -> None:
    llm.enqueue(
        openai_ok(json.dumps(PLAN), prompt=1200, completion=150),
        openai_error(404, "The model `gpt-4o-mini` does not exist", "model_not_found"),
    )
    _, status_response, state_response = run_to_the_end(api, churn_csv)

    status = status_response.json()
    assert (status["status"], status["current_step"]) == ("failed", "data_engineering_agent")
    assert status["research_plan_steps"] == len(PLAN["steps"])
    error = status["last_error"]
    assert error.startswith("data_engineering_agent failed: ")
    assert "OPENAI_MODEL" in error and "OPENAI_BASE_URL" in error and llm.url in error

    state = state_response.json()
    assert state["plan"]["target"] == "Churn"
    assert state["usage"][0]["provider"] == "openai"
    assert state["usage_totals"]["calls"] == 1
    assert state["usage_totals"]["input_tokens"] == 1200
    assert len(llm.requests) == 2
    assert API_KEY not in status_response.text + state_response.text
