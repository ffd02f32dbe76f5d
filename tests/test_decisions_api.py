"""Decisions through the real API and the `temporal` CLI: each takes effect exactly once, and
a caller hears whether theirs did."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEMPORAL_CLI, ServiceProcesses
from tests.sample_data import make_churn
from tests.test_service_integration import awaiting_approval, start, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def churn_csv(service: ServiceProcesses) -> str:
    path = service.data_dir.parent / "decisions-churn.csv"
    make_churn(rows=600).to_csv(path, index=False)
    return str(path)


@pytest.fixture
def api(service: ServiceProcesses):
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        yield client


async def _post_all(
    base_url: str, requests: list[tuple[str, dict[str, object]]]
) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        return await asyncio.gather(*(client.post(path, json=body) for path, body in requests))


def test_twenty_parallel_approvals_one_200_nineteen_409(
    api: httpx.Client, service: ServiceProcesses, churn_csv: str
):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)
    responses = asyncio.run(
        _post_all(service.base_url, [(f"/workflow/{workflow_id}/approve", {})] * 20)
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19, [r.text for r in responses if r.status_code != 409]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert winner["run"]["human_approval"] == "APPROVED"
    refused = [r.json()["detail"] for r in responses if r.status_code == 409]
    assert all("already taken" in d or "not awaiting approval" in d for d in refused), refused

    final = wait_until(api, workflow_id, lambda b: b["status"] == "completed", timeout=180)
    assert final["human_approval"] == "APPROVED"
    audit = api.get(f"/workflow/{workflow_id}").json()["audit"]
    assert [e["action"] for e in audit] == ["started", "approved"]


def test_approve_and_reject_together_exactly_one_wins(
    api: httpx.Client, service: ServiceProcesses, churn_csv: str
):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)
    approve, reject = asyncio.run(
        _post_all(
            service.base_url,
            [
                (f"/workflow/{workflow_id}/approve", {}),
                (f"/workflow/{workflow_id}/reject", {"feedback": "drop the customerID column"}),
            ],
        )
    )
    assert sorted([approve.status_code, reject.status_code]) == [200, 409]
    if reject.status_code == 200:
        # The run follows the rejection: new code waits, and the rejected code never ran.
        body = wait_until(
            api, workflow_id, lambda b: awaiting_approval(b) and b["eda_version"] == 2
        )
        assert body["rejection_count"] == 1
        state = api.get(f"/workflow/{workflow_id}").json()
        assert state["code_context"]["eda_result"] is None
    else:
        body = wait_until(api, workflow_id, lambda b: b["status"] != "awaiting_approval")
        assert body["human_approval"] == "APPROVED" and body["rejection_count"] == 0
    api.post(f"/workflow/{workflow_id}/cancel")


def test_a_stale_version_gets_409_with_the_waiting_version(api: httpx.Client, churn_csv: str):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)
    response = api.post(f"/workflow/{workflow_id}/approve", json={"version": 7})
    assert response.status_code == 409
    assert "v1 is waiting, not v7" in response.json()["detail"]
    api.post(f"/workflow/{workflow_id}/cancel")


def test_temporal_cli_update_approves_by_hand_and_the_name_is_marked_unauthenticated(
    api: httpx.Client, service: ServiceProcesses, churn_csv: str
):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, awaiting_approval)
    done = subprocess.run(
        [str(TEMPORAL_CLI), "workflow", "update", "execute", "--workflow-id", workflow_id,
         "--name", "approve", "--input", '{"by": "alice", "version": 1}',
         "--address", service.env["TEMPORAL_ADDRESS"], "--output", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "APPROVED" in done.stdout
    wait_until(api, workflow_id, lambda b: b["status"] != "awaiting_approval")
    approval = api.get(f"/workflow/{workflow_id}").json()["audit"][-1]
    assert (approval["action"], approval["by"], approval["authenticated"]) == (
        "approved",
        "alice",
        False,
    )
    api.post(f"/workflow/{workflow_id}/cancel")


def test_a_decision_with_no_worker_is_a_clear_503_in_bounded_time_and_never_applies(
    dev_server_env, tmp_path: Path
):
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        tmp_path,
        DECISION_TIMEOUT_SECONDS="2",
        DATASET_ROOTS=str(tmp_path),
    )
    dataset = tmp_path / "churn.csv"
    make_churn(rows=300).to_csv(dataset, index=False)
    processes.start_worker()
    processes.start_api()
    try:
        with httpx.Client(base_url=processes.base_url, timeout=60) as api:
            workflow_id = start(api, str(dataset))
            wait_until(api, workflow_id, awaiting_approval)
            assert processes.worker is not None
            processes.worker.terminate()
            processes.worker.wait(timeout=30)

            # Status needs no worker: the run keeps it where Temporal serves it.
            status = api.get(f"/workflow/{workflow_id}/status")
            assert status.status_code == 200 and status.json()["status"] == "awaiting_approval"
            listed = api.get("/workflows", params={"status": "awaiting_approval"}).json()
            assert workflow_id in [run["workflow_id"] for run in listed["workflows"]]

            began = time.monotonic()
            response = api.post(f"/workflow/{workflow_id}/approve")
            took = time.monotonic() - began
            assert response.status_code == 503, response.text
            assert "DECISION_TIMEOUT_SECONDS" in response.json()["detail"]
            assert took < 15

            # A worker that comes back later must not apply the decision its sender gave up on.
            processes.start_worker()
            status = wait_until(api, workflow_id, awaiting_approval, timeout=60)
            time.sleep(2)
            status = api.get(f"/workflow/{workflow_id}/status").json()
            assert status["status"] == "awaiting_approval"
            assert status["human_approval"] == "PENDING"
            messages = api.get(f"/workflow/{workflow_id}").json()["audit"]
            assert [e["action"] for e in messages] == ["started"]
            assert api.post(f"/workflow/{workflow_id}/approve").status_code == 200
    finally:
        processes.stop()
