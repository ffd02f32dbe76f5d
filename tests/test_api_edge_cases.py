"""The API when things around it go wrong: no worker, foreign workflows, outside termination."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ServiceProcesses
from tests.test_service_integration import GOAL, awaiting_approval, start, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_without_worker(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """The API alone, on a task queue no worker polls, answering queries within 1 s."""
    address = dev_server_env.client.service_client.config.target_host
    processes = ServiceProcesses(
        address, tmp_path_factory.mktemp("no-worker"), QUERY_TIMEOUT_SECONDS="1"
    )
    processes.start_api()
    try:
        with httpx.Client(base_url=processes.base_url, timeout=30) as client:
            yield client
    finally:
        processes.stop()


def test_without_a_worker_queries_are_503_and_name_the_worker(api_without_worker: httpx.Client):
    workflow_id = start(api_without_worker, "/nowhere/churn.csv")
    for method, path in [
        ("GET", f"/workflow/{workflow_id}/status"),
        ("GET", f"/workflow/{workflow_id}"),
        ("POST", f"/workflow/{workflow_id}/approve"),
    ]:
        response = api_without_worker.request(method, path)
        assert response.status_code == 503, (path, response.text)
        assert "worker" in response.json()["detail"]
    # Describing, listing and cancelling need no worker.
    assert api_without_worker.get(f"/workflow/{workflow_id}/artifacts").status_code == 200
    listed = api_without_worker.get("/workflows").json()["workflows"]
    assert workflow_id in [run["workflow_id"] for run in listed]
    assert api_without_worker.post(f"/workflow/{workflow_id}/cancel").status_code == 200


async def test_workflows_of_other_types_are_not_runs(
    dev_server_env: WorkflowEnvironment, api_without_worker: httpx.Client
):
    foreign_id = f"other-{uuid.uuid4().hex[:8]}"
    handle = await dev_server_env.client.start_workflow(
        "SomeoneElsesWorkflow", id=foreign_id, task_queue="not-ours"
    )
    try:
        for method, path in [
            ("GET", f"/workflow/{foreign_id}/status"),
            ("POST", f"/workflow/{foreign_id}/cancel"),
            ("GET", f"/workflow/{foreign_id}/artifacts"),
        ]:
            response = api_without_worker.request(method, path)
            assert response.status_code == 404, (path, response.text)
        description = await handle.describe()
        assert description.status is not None and description.status.name == "RUNNING"
    finally:
        await handle.terminate()


def test_a_page_token_the_api_never_issued_is_400(api_without_worker: httpx.Client):
    for token in ("!!", "%%%"):
        response = api_without_worker.get("/workflows", params={"page_token": token})
        assert response.status_code == 400
        assert "page_token" in response.json()["detail"]


def test_a_wrong_namespace_is_unhealthy(dev_server_env: WorkflowEnvironment, tmp_path: Path):
    address = dev_server_env.client.service_client.config.target_host
    processes = ServiceProcesses(address, tmp_path, TEMPORAL_NAMESPACE="no-such-namespace")
    processes.start_api()
    try:
        response = httpx.get(f"{processes.base_url}/health", timeout=30)
        assert response.status_code == 503
        assert "no-such-namespace" in response.json()["detail"]
    finally:
        processes.stop()


async def test_a_run_terminated_from_outside_reports_cancelled_and_refuses_approval(
    dev_server_env: WorkflowEnvironment, service: ServiceProcesses, tmp_path: Path
):
    dataset = tmp_path / "tiny.csv"
    dataset.write_text("customerID,tenure,Churn\n" + "".join(
        f"c{i},{i % 40},{'Yes' if i % 3 == 0 else 'No'}\n" for i in range(60)
    ))  # fmt: skip
    with httpx.Client(base_url=service.base_url, timeout=30) as api:
        workflow_id = start(api, str(dataset))
        wait_until(api, workflow_id, awaiting_approval)
        await dev_server_env.client.get_workflow_handle(workflow_id).terminate("operator said so")

        status = api.get(f"/workflow/{workflow_id}/status").json()
        assert status["status"] == "cancelled"
        assert "TERMINATED" in status["last_error"]
        assert status["user_goal"] == GOAL
        response = api.post(f"/workflow/{workflow_id}/approve")
        assert response.status_code == 409
        assert "cancelled" in response.json()["detail"]

        def listed(status: str) -> list[str]:
            runs = api.get("/workflows", params={"status": status, "limit": 200}).json()
            return [run["workflow_id"] for run in runs["workflows"]]

        deadline = time.monotonic() + 15  # visibility is eventually consistent
        while workflow_id not in listed("cancelled") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert workflow_id in listed("cancelled")
        assert workflow_id not in listed("awaiting_approval"), "it no longer waits for anyone"
