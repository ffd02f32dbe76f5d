"""A worker killed in the middle of training: a new worker finishes the run, and only once.

The real dev server, `python worker.py` as a separate process that the test SIGKILLs, the API
over HTTP, and the ML Worker stand-in (ML_WORKER_URL) whose /train job outlives the worker.
Nothing here shortens the heartbeat timeout: Temporal notices the dead worker after the 30 s
of workflows/contract.py, as it would in production, and retries the step on the new worker.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEMPORAL_CLI, ServiceProcesses
from tests.sample_data import make_churn
from tests.standins import ExecutorState, ServerThread, ml_worker_app
from tests.test_service_integration import awaiting_approval, start, wait_until
from workflows.contract import ACTIVITY_TIMEOUTS, ActivityName

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT = ACTIVITY_TIMEOUTS[ActivityName.TRAIN_MODEL][1]
assert HEARTBEAT_TIMEOUT is not None


def history_events(address: str, workflow_id: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(TEMPORAL_CLI), "workflow", "show", "--workflow-id", workflow_id,
         "--output", "json", "--address", address],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["events"])


def train_model_events(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The train_model activity's events by kind ("Scheduled", "Started", "Completed", ...)."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    scheduled: set[str] = set()
    for event in events:
        for key, attributes in event.items():
            if not (key.startswith("activityTask") and key.endswith("EventAttributes")):
                continue
            kind = key.removeprefix("activityTask").removesuffix("EventAttributes")
            if kind == "Scheduled":
                if attributes["activityType"]["name"] != ActivityName.TRAIN_MODEL.value:
                    continue
                scheduled.add(event["eventId"])
            elif attributes.get("scheduledEventId") not in scheduled:
                continue
            by_kind.setdefault(kind, []).append(attributes)
    return by_kind


def test_worker_killed_mid_training_is_replaced_and_the_run_completes_once(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    dataset = tmp_path / "churn.csv"
    make_churn(rows=1000).to_csv(dataset, index=False)
    address = dev_server_env.client.service_client.config.target_host
    # The first job would take a minute: the worker is killed long before it could answer.
    ml = ExecutorState(delay_seconds=60)
    with ServerThread(ml_worker_app(ml)) as ml_worker:
        service = ServiceProcesses(
            address,
            tmp_path / "data",
            ML_WORKER_URL=ml_worker.url,
            MAX_CRITIC_ROUNDS="0",  # one training round whatever the critic says
            APPROVAL_TIMEOUT_SECONDS="600",
        )
        workers: list[subprocess.Popen[bytes]] = []
        try:
            workers.append(service.start_worker())
            service.start_api()
            with httpx.Client(base_url=service.base_url, timeout=30) as api:
                workflow_id = start(api, str(dataset))
                wait_until(api, workflow_id, awaiting_approval)
                assert api.post(f"/workflow/{workflow_id}/approve").status_code == 200

                assert ml.received.wait(120), "the training job never reached the ML Worker"
                ml.received.clear()
                during = api.get(f"/workflow/{workflow_id}/status").json()
                assert (during["status"], during["current_step"]) == ("running", "ml_worker")

                workers[0].kill()  # SIGKILL: no graceful shutdown, no failure reported
                workers[0].wait(timeout=10)
                ml.delay_seconds = 0.5  # the retried job is quick
                workers.append(service.start_worker())

                deadline = time.monotonic() + 10
                while ml.disconnected < 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert ml.disconnected == 1, "the first job's client should have gone away"

                limit = HEARTBEAT_TIMEOUT.total_seconds() + 30
                assert ml.received.wait(limit), f"no retry within {limit:g} s of the kill"
                done = wait_until(api, workflow_id, lambda b: b["status"] == "completed", 90)
                assert done["current_step"] == "complete"
                assert done["last_error"] is None

                state = api.get(f"/workflow/{workflow_id}").json()
                listing = api.get(f"/workflow/{workflow_id}/artifacts").json()["artifacts"]
        finally:
            service.stop()
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()

    # The ML Worker saw the job twice: the interrupted attempt and the retry, same version.
    assert len(ml.payloads) == 2
    assert {(p["workflow_id"], p["step"], p["version"]) for p in ml.payloads} == {
        (workflow_id, "ml_worker", 1)
    }

    # The run's state holds one training result, from the retried job.
    result = state["code_context"]["training_result"]
    assert result["backend"] == f"{ml_worker.url}/train"
    assert result["exit_code"] == 0
    assert float(result["metrics"]["score"]) > float(result["metrics"]["baseline_score"])
    assert state["code_context"]["training_code"]["version"] == 1
    assert state["critic_rounds"] == 0
    trained = [m for m in state["messages"] if m["content"].startswith("Training v")]
    assert [m["content"] for m in trained] == ["Training v1 finished with exit code 0."]

    # One step version in the artifact store, written once, with nothing half-written left.
    run_dir = tmp_path / "data" / "artifacts" / workflow_id
    assert sorted(p.name for p in (run_dir / "ml_worker").iterdir()) == ["v1"]
    training_files = {a["name"] for a in listing if a["name"].startswith("ml_worker/")}
    assert {"ml_worker/v1/metrics.json", "ml_worker/v1/model.joblib"} <= training_files
    assert all(name.startswith("ml_worker/v1/") for name in training_files)
    written = json.loads((run_dir / "ml_worker" / "v1" / "metrics.json").read_text())
    assert written["score"] == result["metrics"]["score"]

    # History: the step was scheduled and completed once; its second attempt ran on the new
    # worker after the first one timed out on heartbeats.
    events = train_model_events(history_events(address, workflow_id))
    assert len(events["Scheduled"]) == 1
    assert len(events["Completed"]) == 1
    (started,) = events["Started"]
    assert started["attempt"] == 2
    assert started["identity"].startswith(f"{workers[1].pid}@")
    assert started["lastFailure"]["timeoutFailureInfo"]["timeoutType"] == "TIMEOUT_TYPE_HEARTBEAT"
