"""The real dev server, the real worker and the API over real HTTP, as a user drives them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEMPORAL_CLI, ServiceProcesses, free_port
from tests.sample_data import make_churn

pytestmark = pytest.mark.integration

GOAL = "Build a customer churn prediction model"


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("datasets") / "churn.csv"
    make_churn(rows=1500).to_csv(path, index=False)
    return str(path)


@pytest.fixture
def api(service: ServiceProcesses) -> httpx.Client:
    with httpx.Client(base_url=service.base_url, timeout=30) as client:
        yield client


def start(api: httpx.Client, dataset: str, **extra: Any) -> str:
    response = api.post(
        "/workflow/start", json={"user_goal": GOAL, "dataset_url": dataset, **extra}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "started"
    assert body["workflow_id"].startswith("wf-")
    return str(body["workflow_id"])


def wait_until(
    api: httpx.Client,
    workflow_id: str,
    ready: Callable[[dict[str, Any]], bool],
    timeout: float = 120,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/workflow/{workflow_id}/status")
        assert response.status_code == 200, response.text
        body = response.json()
        if ready(body):
            return body
        assert body["status"] not in ("failed", "cancelled", "timed_out") or ready(body), body
        time.sleep(0.3)
    raise AssertionError(f"{workflow_id} never got there; last status: {body}")


def awaiting_approval(body: dict[str, Any]) -> bool:
    return bool(body["status"] == "awaiting_approval")


def test_start_status_approve_completes_with_metrics(api: httpx.Client):
    # The README's dataset, by the relative path it gives (the worker runs from the repository).
    workflow_id = start(api, "examples/churn.csv")
    waiting = wait_until(api, workflow_id, awaiting_approval)
    assert waiting["current_step"] == "human_approval"
    assert waiting["user_goal"] == GOAL
    assert waiting["research_plan_steps"] >= 3
    assert waiting["feedback_count"] == 0

    state = api.get(f"/workflow/{workflow_id}").json()
    assert "DATASET_PATH" in state["code_context"]["eda_code"]["code"]
    assert state["plan"]["target"] == "Churn"

    stale = api.post(f"/workflow/{workflow_id}/approve", json={"version": 7})
    assert stale.status_code == 409
    assert "EDA code v1 is waiting, not v7" in stale.json()["detail"]
    assert api.post(f"/workflow/{workflow_id}/approve", json={"version": 1}).status_code == 200
    done = wait_until(api, workflow_id, lambda b: b["status"] == "completed", timeout=240)
    assert done["current_step"] == "complete"

    state = api.get(f"/workflow/{workflow_id}").json()
    metrics = state["code_context"]["training_result"]["metrics"]
    assert float(metrics["score"]) > float(metrics["baseline_score"])
    assert state["review"]["verdict"] in ("accept", "revise")
    assert state["usage_totals"]["calls"] >= 4
    assert state["human_approval"] == "APPROVED"
    assert_artifacts_downloadable(api, workflow_id, metrics)


def assert_artifacts_downloadable(
    api: httpx.Client, workflow_id: str, metrics: dict[str, Any]
) -> None:
    listing = api.get(f"/workflow/{workflow_id}/artifacts")
    assert listing.status_code == 200, listing.text
    by_name = {a["name"]: a for a in listing.json()["artifacts"]}
    expected = {
        "data_engineering_agent/v1/code.py": "text/x-python",
        "browser_agent/v1/stdout.log": "text/plain",
        "browser_agent/v1/eda_summary.json": "application/json",
        "ml_agent/v1/code.py": "text/x-python",
        "ml_worker/v1/metrics.json": "application/json",
        "ml_worker/v1/model.joblib": "application/octet-stream",
    }
    for name, content_type in expected.items():
        assert name in by_name, f"{name} missing from {sorted(by_name)}"
        download = api.get(by_name[name]["url"])
        assert download.status_code == 200
        assert download.headers["content-type"].startswith(content_type)
        assert len(download.content) == by_name[name]["size_bytes"] > 0
    downloaded = api.get(f"/workflow/{workflow_id}/artifacts/ml_worker/v1/metrics.json").json()
    assert downloaded["score"] == metrics["score"]
    summary = api.get(f"/workflow/{workflow_id}/artifacts/browser_agent/v1/eda_summary.json")
    assert summary.json()["target"] == "Churn"

    for bad in ("nope.txt", "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "ml_worker/v1/../../x"):
        assert api.get(f"/workflow/{workflow_id}/artifacts/{bad}").status_code == 404, bad
    assert api.get("/workflow/wf-doesnotexist/artifacts").status_code == 404


def test_reject_returns_to_data_engineering_then_approve(api: httpx.Client, churn_csv: str):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)
    first = api.get(f"/workflow/{workflow_id}").json()["code_context"]["eda_code"]
    assert "customerID" in first["code"]

    response = api.post(
        f"/workflow/{workflow_id}/reject", json={"feedback": "drop the customerID column"}
    )
    assert response.status_code == 200, response.text
    waiting = wait_until(
        api, workflow_id, lambda b: awaiting_approval(b) and b["feedback_count"] == 1
    )
    assert waiting["rejection_count"] == 1
    state = api.get(f"/workflow/{workflow_id}").json()
    assert state["code_context"]["eda_code"]["version"] == 2
    assert state["review_feedback"][0]["text"] == "drop the customerID column"
    assert "customerID" in state["code_context"]["eda_code"]["summary"]

    assert api.post(f"/workflow/{workflow_id}/approve").status_code == 200
    wait_until(
        api,
        workflow_id,
        lambda b: b["current_step"] in ("ml_agent", "ml_worker", "critic_agent", "complete"),
    )
    api.post(f"/workflow/{workflow_id}/cancel")


def test_a_missing_dataset_fails_the_run_with_a_clear_message(api: httpx.Client, tmp_path: Path):
    workflow_id = start(api, str(tmp_path / "no-such-file.csv"))
    failed = wait_until(api, workflow_id, lambda b: b["status"] == "failed", timeout=60)
    assert failed["current_step"] == "dataset_intake"
    assert failed["last_error"].startswith("dataset_intake failed: ")
    assert "no such local file" in failed["last_error"]
    assert "no-such-file.csv" in failed["last_error"]


def test_unknown_run_is_404_everywhere(api: httpx.Client):
    for method, path in [
        ("GET", "/workflow/wf-doesnotexist/status"),
        ("GET", "/workflow/wf-doesnotexist"),
        ("POST", "/workflow/wf-doesnotexist/approve"),
        ("POST", "/workflow/wf-doesnotexist/reject"),
        ("POST", "/workflow/wf-doesnotexist/cancel"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert "wf-doesnotexist" in response.json()["detail"]


def test_approve_while_not_awaiting_is_409_and_sends_nothing(api: httpx.Client, churn_csv: str):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)
    assert api.post(f"/workflow/{workflow_id}/cancel").status_code == 200
    wait_until(api, workflow_id, lambda b: b["status"] == "cancelled")

    response = api.post(f"/workflow/{workflow_id}/approve")
    assert response.status_code == 409
    assert "not awaiting approval" in response.json()["detail"]
    assert api.post(f"/workflow/{workflow_id}/reject", json={"feedback": "x"}).status_code == 409
    assert api.post(f"/workflow/{workflow_id}/cancel").status_code == 409
    state = api.get(f"/workflow/{workflow_id}").json()
    assert state["status"] == "cancelled"
    assert state["rejection_count"] == 0
    assert not any("Ignored" in m["content"] for m in state["messages"]), "no signal was sent"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataset_url": "x.csv"}, "body.user_goal"),
        ({"user_goal": "", "dataset_url": "x.csv"}, "body.user_goal"),
        ({"user_goal": "churn"}, "body"),  # "give exactly one of dataset_url or dataset_id"
        ({"user_goal": "churn", "dataset_url": "ftp://example.com/x.csv"}, "body.dataset_url"),
        (
            {"user_goal": "churn", "dataset_url": "x.csv", "workflow_id": "bad id"},
            "body.workflow_id",
        ),
    ],
)
def test_invalid_start_body_is_422_naming_the_field(api: httpx.Client, body: dict, field: str):
    response = api.post("/workflow/start", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert field in payload["detail"]
    assert any(error["field"] == field for error in payload["errors"])


def test_non_json_body_and_bad_list_filter_are_422(api: httpx.Client):
    response = api.post(
        "/workflow/start", content=b"not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    response = api.get("/workflows", params={"status": "sleeping"})
    assert response.status_code == 422
    assert "status" in response.json()["detail"]


def test_client_chosen_id_and_idempotency_key_return_the_same_run(
    api: httpx.Client, churn_csv: str
):
    body = {"user_goal": GOAL, "dataset_url": churn_csv, "workflow_id": "wf-client-chosen-1"}
    first = api.post("/workflow/start", json=body).json()
    again = api.post("/workflow/start", json=body).json()
    assert first["workflow_id"] == again["workflow_id"] == "wf-client-chosen-1"
    assert "already started" in again["message"]

    other_goal = {**body, "user_goal": "Predict something else"}
    assert api.post("/workflow/start", json=other_goal).status_code == 409

    headers = {"Idempotency-Key": "order-42"}
    plain = {"user_goal": GOAL, "dataset_url": churn_csv}
    one = api.post("/workflow/start", json=plain, headers=headers).json()
    two = api.post("/workflow/start", json=plain, headers=headers).json()
    assert one["workflow_id"] == two["workflow_id"]
    listed = api.get("/workflows", params={"limit": 200}).json()["workflows"]
    assert [r["workflow_id"] for r in listed].count(one["workflow_id"]) == 1
    for workflow_id in (one["workflow_id"], "wf-client-chosen-1"):
        api.post(f"/workflow/{workflow_id}/cancel")


def test_list_filters_by_status_newest_first_and_paginates(api: httpx.Client, churn_csv: str):
    older = start(api, churn_csv)
    newer = start(api, churn_csv)
    for workflow_id in (older, newer):
        wait_until(api, workflow_id, awaiting_approval)

    def listed(**params: Any) -> dict[str, Any]:
        response = api.get("/workflows", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    deadline = time.monotonic() + 30  # visibility is eventually consistent
    while time.monotonic() < deadline:
        ids = [r["workflow_id"] for r in listed(status="awaiting_approval")["workflows"]]
        if older in ids and newer in ids:
            break
        time.sleep(0.3)
    assert ids.index(newer) < ids.index(older), "newest first"
    summary = next(
        r for r in listed(status="awaiting_approval")["workflows"] if r["workflow_id"] == newer
    )
    assert summary["user_goal"] == GOAL and summary["current_step"] == "human_approval"
    assert all(
        r["status"] == "awaiting_approval" for r in listed(status="awaiting_approval")["workflows"]
    )
    assert newer not in [r["workflow_id"] for r in listed(status="completed")["workflows"]]

    first_page = listed(limit=1)
    assert first_page["count"] == 1 and first_page["next_page_token"]
    second_page = listed(limit=1, page_token=first_page["next_page_token"])
    assert second_page["workflows"][0]["workflow_id"] != first_page["workflows"][0]["workflow_id"]
    for workflow_id in (older, newer):
        api.post(f"/workflow/{workflow_id}/cancel")


def test_cancel_ends_a_waiting_run_as_cancelled(api: httpx.Client, churn_csv: str):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)
    response = api.post(f"/workflow/{workflow_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelling"
    final = wait_until(api, workflow_id, lambda b: b["status"] == "cancelled")
    assert final["current_step"] == "human_approval"


def test_health_reports_temporal_reachable(api: httpx.Client):
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json()["temporal"] == "reachable"


def test_health_is_503_when_temporal_is_down(tmp_path: Path):
    nowhere = ServiceProcesses(f"127.0.0.1:{free_port()}", tmp_path)
    nowhere.start_api()
    try:
        response = httpx.get(f"{nowhere.base_url}/health", timeout=30)
        assert response.status_code == 503
        assert response.json()["temporal"] == "unreachable"
        status = httpx.get(f"{nowhere.base_url}/workflow/wf-anything/status", timeout=30)
        assert status.status_code == 503
        assert (
            "TEMPORAL_ADDRESS" in status.json()["detail"] or "Temporal" in status.json()["detail"]
        )
    finally:
        nowhere.stop()


def test_openapi_docs_are_served(api: httpx.Client):
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/workflow/start", "/workflow/{workflow_id}/status", "/workflows", "/health"):
        assert path in paths


def test_temporal_cli_signals_and_queries_a_run_started_through_the_api(
    api: httpx.Client, churn_csv: str, service: ServiceProcesses
):
    address = service.env["TEMPORAL_ADDRESS"]

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(TEMPORAL_CLI), "workflow", *args, "--address", address],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)

    printed = cli("query", "--workflow-id", workflow_id, "--name", "status", "--output", "json")
    assert json.loads(printed)["queryResult"][0]["status"] == "awaiting_approval"

    cli("signal", "--workflow-id", workflow_id, "--name", "reject",
        "--input", '{"feedback": "drop the customerID column"}')  # fmt: skip
    wait_until(api, workflow_id, lambda b: awaiting_approval(b) and b["feedback_count"] == 1)
    cli(
        "signal",
        "--workflow-id",
        workflow_id,
        "--name",
        "reject",
        "--input",
        '"use median imputation"',
    )
    wait_until(api, workflow_id, lambda b: awaiting_approval(b) and b["feedback_count"] == 2)
    feedback = api.get(f"/workflow/{workflow_id}").json()["review_feedback"]
    assert [f["text"] for f in feedback] == ["drop the customerID column", "use median imputation"]

    cli("signal", "--workflow-id", workflow_id, "--name", "approve")
    after = wait_until(api, workflow_id, lambda b: b["status"] != "awaiting_approval")
    assert after["human_approval"] == "APPROVED"
    api.post(f"/workflow/{workflow_id}/cancel")
