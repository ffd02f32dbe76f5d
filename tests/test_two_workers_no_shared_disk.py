"""Two workers and an API that share no disk: only Temporal and S3-compatible storage.

moto's S3 server on loopback is the store; the API and each worker get their own private
DATA_DIR and the same task queue. A run's steps move from one worker to the other (the first is
stopped after Data Engineering), so the second must read the upload and the dataset from
storage; and a worker killed mid-training leaves the retry to the other one. Artifacts are
downloaded through the API, which never sees a worker's disk.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ServiceProcesses
from tests.sample_data import make_churn
from tests.standins import ExecutorState, ServerThread, ml_worker_app
from tests.test_service_integration import GOAL, awaiting_approval, start, wait_until
from tests.test_storage import S3Server, s3_server  # noqa: F401  (the fixture)
from tests.test_worker_recovery import HEARTBEAT_TIMEOUT, history_events, train_model_events
from workflows.contract import ActivityName

pytestmark = pytest.mark.integration

PREFIX = "runs"


@dataclass
class Cluster:
    """One API and workers "a" and "b", each with a private DATA_DIR, on one task queue."""

    address: str
    bucket: str
    s3: S3Server
    ml: ExecutorState
    api: ServiceProcesses
    workers: dict[str, ServiceProcesses] = field(default_factory=dict)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        worker = self.workers[name]
        if worker.worker is not None and worker.worker.poll() is None:
            return worker.worker
        return worker.start_worker()

    def stop_worker(self, name: str) -> None:
        process = self.workers[name].worker
        assert process is not None
        process.terminate()  # graceful: it finishes what it holds, then leaves the queue
        process.wait(timeout=30)

    def data_dir(self, name: str) -> Path:
        return self.workers[name].data_dir

    def objects(self, prefix: str) -> dict[str, bytes]:
        client = self.s3.client()
        listed = client.list_objects_v2(Bucket=self.bucket, Prefix=f"{PREFIX}/{prefix}")
        return {
            o["Key"][len(PREFIX) + 1 :]: client.get_object(Bucket=self.bucket, Key=o["Key"])[
                "Body"
            ].read()
            for o in listed.get("Contents", [])
        }


@pytest.fixture(scope="module")
def cluster(
    dev_server_env: WorkflowEnvironment,
    s3_server: S3Server,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    address = dev_server_env.client.service_client.config.target_host
    bucket = s3_server.new_bucket()
    ml = ExecutorState(delay_seconds=0.5)
    root = tmp_path_factory.mktemp("no-shared-disk")
    with ServerThread(ml_worker_app(ml)) as ml_worker:
        shared = {
            **s3_server.environment(bucket, PREFIX),
            "TEMPORAL_TASK_QUEUE": f"tq-shared-{bucket[-8:]}",
            "ML_WORKER_URL": ml_worker.url,
            "MAX_CRITIC_ROUNDS": "0",
            "APPROVAL_TIMEOUT_SECONDS": "600",
        }
        cluster = Cluster(
            address, bucket, s3_server, ml, ServiceProcesses(address, root / "api", **shared)
        )
        for name in ("a", "b"):
            cluster.workers[name] = ServiceProcesses(address, root / f"worker-{name}", **shared)
        try:
            cluster.api.start_api()
            yield cluster
        finally:
            cluster.api.stop()
            for worker in cluster.workers.values():
                worker.stop()


def activity_identities(address: str, workflow_id: str) -> dict[str, set[str]]:
    """Which worker identities ran each activity type, from the run's history."""
    names: dict[str, str] = {}
    ran: dict[str, set[str]] = {}
    for event in history_events(address, workflow_id):
        if scheduled := event.get("activityTaskScheduledEventAttributes"):
            names[event["eventId"]] = scheduled["activityType"]["name"]
        if started := event.get("activityTaskStartedEventAttributes"):
            name = names[started["scheduledEventId"]]
            ran.setdefault(name, set()).add(started["identity"].split("@")[0])
    return ran


def wait_for(
    api: httpx.Client, workflow_id: str, ready: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """As wait_until, but a 503 (no worker answering yet: one is still starting) is waited out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/workflow/{workflow_id}/status")
        if response.status_code == 503:
            time.sleep(1)
            continue
        assert response.status_code == 200, response.text
        remaining = max(deadline - time.monotonic(), 1)
        return wait_until(api, workflow_id, ready, remaining)
    raise AssertionError(f"run {workflow_id} answered 503 for {timeout:g} s")


def approve(api: httpx.Client, workflow_id: str, timeout: float = 90) -> None:
    """Approve, waiting out the 503 of a decision no worker took yet (one is still starting)."""
    deadline = time.monotonic() + timeout
    while (response := api.post(f"/workflow/{workflow_id}/approve")).status_code == 503:
        assert time.monotonic() < deadline, response.text
    assert response.status_code == 200, response.text


def local_files(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.rglob(name) if p.is_file()]


def test_a_run_moves_between_workers_through_storage_alone(cluster: Cluster) -> None:
    worker_a = cluster.start_worker("a")
    data = make_churn(rows=600).to_csv(index=False).encode()
    with httpx.Client(base_url=cluster.api.base_url, timeout=60) as api:
        # The upload goes through the API into the bucket; no worker can see the API's disk.
        uploaded = api.post("/datasets", files={"file": ("churn.csv", data, "text/csv")})
        assert uploaded.status_code == 201, uploaded.text
        upload = uploaded.json()
        stored = cluster.objects(f"uploads/{upload['dataset_id']}/")
        assert stored[f"uploads/{upload['dataset_id']}/dataset.csv"] == data
        assert not local_files(cluster.api.data_dir, "dataset.csv")

        response = api.post(
            "/workflow/start", json={"user_goal": GOAL, "dataset_id": upload["dataset_id"]}
        )
        assert response.status_code == 200, response.text
        workflow_id = response.json()["workflow_id"]
        wait_for(api, workflow_id, awaiting_approval, 240)

        # Worker A leaves; B, which has never seen this run, takes every step from here on.
        cluster.stop_worker("a")
        worker_b = cluster.start_worker("b")
        approve(api, workflow_id)
        done = wait_for(api, workflow_id, lambda b: b["status"] == "completed", 300)
        assert done["last_error"] is None

        listing = api.get(f"/workflow/{workflow_id}/artifacts").json()["artifacts"]
        names = {a["name"] for a in listing}
        report = api.get(f"/workflow/{workflow_id}/artifacts/critic_agent/v1/report.html")
        model = api.get(f"/workflow/{workflow_id}/artifacts/ml_worker/v1/model.joblib")
        plots = [n for n in names if n.startswith("browser_agent/v1/") and n.endswith(".png")]
        plot = api.get(f"/workflow/{workflow_id}/artifacts/{plots[0]}") if plots else None

    ran = activity_identities(cluster.address, workflow_id)
    pid_a, pid_b = str(worker_a.pid), str(worker_b.pid)
    for step in (ActivityName.FETCH_DATASET, ActivityName.RESEARCH, ActivityName.DATA_ENGINEERING):
        assert ran[step.value] == {pid_a}, (step, ran)
    for step in (ActivityName.EXECUTE_EDA, ActivityName.TRAIN_MODEL, ActivityName.CRITIC):
        assert ran[step.value] == {pid_b}, (step, ran)

    # B read the dataset from storage into its checksum-keyed cache, once, verified.
    sha256 = upload["sha256"]
    cached = cluster.data_dir("b") / "cache" / sha256 / "dataset.csv"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256
    assert not (cluster.data_dir("b") / "datasets").exists()
    # The ML Worker got a path on B's disk and a presigned URL to the same bytes.
    payload = cluster.ml.payloads[-1]
    assert payload["dataset"] == str(cached)
    fetched = httpx.get(str(payload["dataset_url"]))
    assert hashlib.sha256(fetched.content).hexdigest() == sha256

    # The artifacts came through the API from the bucket, headers and all.
    objects = cluster.objects(f"artifacts/{workflow_id}/")
    assert {f"artifacts/{workflow_id}/{name}" for name in names} == set(objects)
    assert {"browser_agent/v1/code.py", "ml_worker/v1/metrics.json"} <= names
    assert model.status_code == 200
    assert model.content == objects[f"artifacts/{workflow_id}/ml_worker/v1/model.joblib"]
    assert report.status_code == 200
    assert report.headers["content-security-policy"].startswith("sandbox;")
    assert report.headers["x-content-type-options"] == "nosniff"
    # The report (written on B) embeds the plots B's EDA stored: read back from storage.
    if plot is not None:
        assert plot.content.startswith(b"\x89PNG")
        assert "data:image/png;base64," in report.text
    for name in ("a", "b"):  # no worker keeps artifacts on its own disk
        assert not local_files(cluster.data_dir(name), "model.joblib")
    assert not (cluster.api.data_dir / "artifacts").exists()


def test_a_worker_killed_mid_training_leaves_the_run_to_the_other(
    cluster: Cluster, tmp_path: Path
) -> None:
    workers = {name: cluster.start_worker(name) for name in ("a", "b")}
    dataset = tmp_path / "churn.csv"
    make_churn(rows=800).to_csv(dataset, index=False)
    cluster.ml.delay_seconds = 60  # the first job outlives the worker that sent it
    cluster.ml.received.clear()
    with httpx.Client(base_url=cluster.api.base_url, timeout=60) as api:
        workflow_id = start(api, str(dataset))
        wait_for(api, workflow_id, awaiting_approval, 240)
        approve(api, workflow_id)
        assert cluster.ml.received.wait(240), "the training job never reached the ML Worker"
        cluster.ml.received.clear()

        # The job's dataset path is on the sending worker's own disk: that one is killed.
        sent: Any = cluster.ml.payloads[-1]["dataset"]
        victim = next(n for n in workers if str(sent).startswith(str(cluster.data_dir(n))))
        survivor = next(n for n in workers if n != victim)
        workers[victim].kill()  # SIGKILL: no goodbye to Temporal
        workers[victim].wait(timeout=10)
        cluster.ml.delay_seconds = 0.5

        limit = HEARTBEAT_TIMEOUT.total_seconds() + 60
        assert cluster.ml.received.wait(limit), f"no retry within {limit:g} s of the kill"
        done = wait_for(api, workflow_id, lambda b: b["status"] == "completed", 240)
        assert done["last_error"] is None
        metrics = api.get(f"/workflow/{workflow_id}/artifacts/ml_worker/v1/metrics.json")

    retried = cluster.ml.payloads[-1]
    assert str(retried["dataset"]).startswith(str(cluster.data_dir(survivor)))
    events = train_model_events(history_events(cluster.address, workflow_id))
    assert len(events["Completed"]) == 1
    (started,) = events["Started"]
    assert started["attempt"] == 2
    assert started["identity"].startswith(f"{workers[survivor].pid}@")
    assert started["lastFailure"]["timeoutFailureInfo"]["timeoutType"] == "TIMEOUT_TYPE_HEARTBEAT"
    assert metrics.status_code == 200
    stored = cluster.objects(f"artifacts/{workflow_id}/ml_worker/v1/metrics.json")
    assert json.loads(metrics.content) == json.loads(next(iter(stored.values())))
