"""Executing code locally and on the remote services: results, artifacts, errors, heartbeats."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.artifacts import ArtifactStore
from activities.executors import ExecutionActivities, flatten_metrics
from settings import Settings
from tests.standins import ExecutorState, ServerThread, browser_agent_app, ml_worker_app
from workflows.models import ExecutionRequest, ExecutionResult, Step

RUN = "wf-exec"

EDA_CODE = textwrap.dedent(
    """
    import json, os
    import pandas as pd
    frame = pd.read_csv(os.environ["DATASET_PATH"])
    out = os.environ["OUTPUT_DIR"]
    json.dump({"rows": len(frame), "columns": list(frame.columns)},
              open(os.path.join(out, "eda_summary.json"), "w"))
    json.dump({"rows": len(frame), "quality": {"missing": 0}, "ok": True, "note": "fine",
               "bad": float("nan"), "hist": [1, 2]},
              open(os.path.join(out, "metrics.json"), "w"))
    open(os.path.join(out, "age_hist.png"), "wb").write(b"\\x89PNG fake")
    print("EDA done")
    """
)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "datasets" / RUN / "dataset.csv"
    path.parent.mkdir(parents=True)
    path.write_text("age,churned\n" + "".join(f"{20 + i},{i % 2}\n" for i in range(40)))
    return path


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "browser_agent_url": None,
        "ml_worker_url": None,
        "execution_timeout_seconds": 30.0,
        "execution_memory_mb": 1024,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def request(dataset: Path, step: Step, code: str, version: int = 1) -> ExecutionRequest:
    return ExecutionRequest(
        workflow_id=RUN, step=step, version=version, code=code, dataset_path=str(dataset)
    )


@pytest.fixture
def browser_agent() -> Iterator[tuple[ServerThread, ExecutorState]]:
    state = ExecutorState()
    with ServerThread(browser_agent_app(state)) as running:
        yield running, state


@pytest.fixture
def ml_worker() -> Iterator[tuple[ServerThread, ExecutorState]]:
    state = ExecutorState()
    with ServerThread(ml_worker_app(state)) as running:
        yield running, state


# --- Local ------------------------------------------------------------------------------------


async def test_local_eda_stores_code_logs_and_outputs_and_reports_metrics(
    tmp_path: Path, dataset: Path, store: ArtifactStore
) -> None:
    activities = ExecutionActivities(make_settings(tmp_path), store)

    result = await activities.execute_eda(request(dataset, Step.BROWSER_AGENT, EDA_CODE))

    assert result.backend == "local"
    assert result.exit_code == 0, result.stderr_tail
    assert result.stdout_tail == "EDA done\n"
    assert result.metrics == {
        "rows": 40.0,
        "quality.missing": 0.0,
        "ok": 1.0,
        "note": "fine",
        "bad": "nan",
    }
    names = {ref.name: ref.content_type for ref in result.artifacts}
    assert names == {
        "browser_agent/v1/age_hist.png": "image/png",
        "browser_agent/v1/code.py": "text/x-python",
        "browser_agent/v1/eda_summary.json": "application/json",
        "browser_agent/v1/metrics.json": "application/json",
        "browser_agent/v1/stderr.log": "text/plain",
        "browser_agent/v1/stdout.log": "text/plain",
    }
    assert store.resolve(RUN, "browser_agent/v1/code.py").read_text() == EDA_CODE
    assert store.list(RUN) == result.artifacts
    assert list(activities.scratch_dir.iterdir()) == []  # the attempt's folder is gone


async def test_rerunning_a_step_version_replaces_its_artifacts(
    tmp_path: Path, dataset: Path, store: ArtifactStore
) -> None:
    activities = ExecutionActivities(make_settings(tmp_path), store)
    await activities.execute_eda(request(dataset, Step.BROWSER_AGENT, EDA_CODE))

    again = await activities.execute_eda(
        request(dataset, Step.BROWSER_AGENT, "open('other.txt', 'w').write('x')\n")
    )

    assert [ref.name for ref in again.artifacts] == [
        "browser_agent/v1/code.py",
        "browser_agent/v1/other.txt",
        "browser_agent/v1/stderr.log",
        "browser_agent/v1/stdout.log",
    ]
    assert again.metrics is None


async def test_local_training_keeps_the_model(
    tmp_path: Path, dataset: Path, store: ArtifactStore
) -> None:
    code = textwrap.dedent(
        """
        import json, os, joblib, pandas as pd
        from sklearn.linear_model import LogisticRegression
        frame = pd.read_csv(os.environ["DATASET_PATH"])
        model = LogisticRegression().fit(frame[["age"]], frame["churned"])
        joblib.dump(model, os.path.join(os.environ["OUTPUT_DIR"], "model.joblib"))
        json.dump({"accuracy": model.score(frame[["age"]], frame["churned"])},
                  open(os.path.join(os.environ["OUTPUT_DIR"], "metrics.json"), "w"))
        """
    )
    activities = ExecutionActivities(make_settings(tmp_path), store)

    result = await activities.train_model(request(dataset, Step.ML_WORKER, code, version=2))

    assert result.exit_code == 0, result.stderr_tail
    assert result.metrics is not None and 0 <= float(result.metrics["accuracy"]) <= 1
    model = next(r for r in result.artifacts if r.name == "ml_worker/v2/model.joblib")
    assert model.content_type == "application/octet-stream" and model.size_bytes > 0


async def test_failing_code_is_a_result_for_the_critic_not_an_activity_failure(
    tmp_path: Path, dataset: Path, store: ArtifactStore
) -> None:
    activities = ExecutionActivities(make_settings(tmp_path), store)

    result = await activities.execute_eda(
        request(dataset, Step.BROWSER_AGENT, "import pandas as pd\npd.read_csv('nope.csv')\n")
    )

    assert result.exit_code == 1
    assert not result.succeeded
    assert "FileNotFoundError" in result.stderr_tail
    assert result.stderr_tail.endswith("[sandbox] the code exited with code 1\n")
    assert "browser_agent/v1/stderr.log" in {ref.name for ref in result.artifacts}


async def test_a_limit_violation_is_a_non_retryable_failure_naming_the_limit(
    tmp_path: Path, dataset: Path, store: ArtifactStore
) -> None:
    activities = ExecutionActivities(make_settings(tmp_path, execution_timeout_seconds=1.0), store)

    with pytest.raises(ApplicationError) as caught:
        await activities.execute_eda(
            request(dataset, Step.BROWSER_AGENT, "print('start', flush=True)\nwhile True: pass\n")
        )

    assert caught.value.type == "ExecutionLimitExceeded"
    assert caught.value.non_retryable
    assert "exceeded the 1 s wall-clock limit" in caught.value.message
    assert "wf-exec" in caught.value.message and "browser_agent v1" in caught.value.message
    # What it did before the limit is kept for whoever investigates.
    assert store.resolve(RUN, "browser_agent/v1/stdout.log").read_text() == "start\n"


async def test_heartbeats_are_sent_while_the_local_sandbox_runs(
    tmp_path: Path, dataset: Path, store: ArtifactStore
) -> None:
    activities = ExecutionActivities(make_settings(tmp_path), store, heartbeat_seconds=0.2)
    beats: list[tuple[object, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    result = await env.run(
        activities.execute_eda,
        request(dataset, Step.BROWSER_AGENT, "import time\ntime.sleep(1.2)\n"),
    )

    assert result.exit_code == 0
    assert len(beats) >= 4


async def test_a_missing_dataset_is_not_retried(tmp_path: Path, store: ArtifactStore) -> None:
    activities = ExecutionActivities(make_settings(tmp_path), store)

    with pytest.raises(ApplicationError) as caught:
        await activities.execute_eda(request(tmp_path / "gone.csv", Step.BROWSER_AGENT, "pass\n"))

    assert caught.value.type == "DatasetNotFound"
    assert caught.value.non_retryable


# --- Remote -----------------------------------------------------------------------------------


async def test_eda_runs_on_the_browser_agent_when_configured(
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    browser_agent: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = browser_agent
    activities = ExecutionActivities(make_settings(tmp_path, browser_agent_url=running.url), store)

    result = await activities.execute_eda(request(dataset, Step.BROWSER_AGENT, EDA_CODE))

    assert state.payloads[0]["code"] == EDA_CODE
    assert result.backend == f"{running.url}/execute"
    assert result.exit_code == 0, result.stderr_tail
    assert result.stdout_tail == "EDA done\n"
    assert result.metrics is not None and result.metrics["rows"] == 40.0
    assert {ref.name.removeprefix("browser_agent/v1/") for ref in result.artifacts} == {
        "age_hist.png",
        "code.py",
        "eda_summary.json",
        "metrics.json",
        "response.json",
        "stderr.log",
        "stdout.log",
    }
    summary = json.loads(store.resolve(RUN, "browser_agent/v1/eda_summary.json").read_text())
    assert summary == {"rows": 40, "columns": ["age", "churned"]}


async def test_training_goes_to_the_ml_worker_with_the_dataset_path(
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    ml_worker: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = ml_worker
    code = "import json\njson.dump({'r2': 0.75}, open('metrics.json', 'w'))\n"
    activities = ExecutionActivities(make_settings(tmp_path, ml_worker_url=running.url), store)

    result = await activities.train_model(request(dataset, Step.ML_WORKER, code))

    assert state.payloads[0]["dataset"] == str(dataset)
    assert state.payloads[0]["workflow_id"] == RUN
    assert result.backend == f"{running.url}/train"
    assert result.metrics == {"r2": 0.75}


async def test_a_server_error_is_retryable_and_the_retry_succeeds(
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    ml_worker: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = ml_worker
    state.fail_first = 1
    activities = ExecutionActivities(make_settings(tmp_path, ml_worker_url=running.url), store)
    job = request(dataset, Step.ML_WORKER, "print('trained')\n")
    env = ActivityEnvironment()

    with pytest.raises(ApplicationError) as caught:
        await env.run(activities.train_model, job)
    result = await env.run(activities.train_model, job)

    assert caught.value.type == "ExecutorUnavailable"
    assert not caught.value.non_retryable
    assert "HTTP 503" in caught.value.message
    assert result.exit_code == 0 and result.stdout_tail == "trained\n"
    assert len(state.payloads) == 2
    # Both attempts name the same job, so the service can tell a retry from a new job.
    assert state.idempotency_keys == [f"{RUN}/ml_worker/v{job.version}"] * 2


async def test_a_client_error_is_not_retried(
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    browser_agent: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = browser_agent
    state.reject_with = 422
    activities = ExecutionActivities(make_settings(tmp_path, browser_agent_url=running.url), store)

    with pytest.raises(ApplicationError) as caught:
        await activities.execute_eda(request(dataset, Step.BROWSER_AGENT, "pass\n"))

    assert caught.value.type == "ExecutorRejected"
    assert caught.value.non_retryable
    assert "HTTP 422" in caught.value.message and "bad job" in caught.value.message


async def test_an_unreachable_service_is_retryable(
    tmp_path: Path, dataset: Path, store: ArtifactStore
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    activities = ExecutionActivities(
        make_settings(tmp_path, browser_agent_url=f"http://127.0.0.1:{port}"), store
    )

    with pytest.raises(ApplicationError) as caught:
        await activities.execute_eda(request(dataset, Step.BROWSER_AGENT, "pass\n"))

    assert caught.value.type == "ExecutorUnavailable"
    assert not caught.value.non_retryable


async def test_a_remote_job_past_the_time_limit_fails_naming_the_limit(
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    ml_worker: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = ml_worker
    state.delay_seconds = 5
    activities = ExecutionActivities(
        make_settings(tmp_path, ml_worker_url=running.url, execution_timeout_seconds=0.5), store
    )

    with pytest.raises(ApplicationError) as caught:
        await activities.train_model(request(dataset, Step.ML_WORKER, "pass\n"))

    assert caught.value.type == "ExecutionLimitExceeded"
    assert caught.value.non_retryable
    assert "exceeded the 0.5 s wall-clock limit" in caught.value.message


async def test_heartbeats_are_sent_while_a_remote_job_runs(
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    browser_agent: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = browser_agent
    state.delay_seconds = 1.5
    activities = ExecutionActivities(
        make_settings(tmp_path, browser_agent_url=running.url), store, heartbeat_seconds=0.2
    )
    beats: list[tuple[object, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    result = await env.run(
        activities.execute_eda, request(dataset, Step.BROWSER_AGENT, "print('hi')\n")
    )

    assert result.exit_code == 0
    assert len(beats) >= 4


async def test_cancelling_the_activity_cancels_the_remote_request(
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    browser_agent: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = browser_agent
    state.delay_seconds = 30
    activities = ExecutionActivities(
        make_settings(tmp_path, browser_agent_url=running.url), store, heartbeat_seconds=0.2
    )
    env = ActivityEnvironment()
    task = asyncio.create_task(
        env.run(activities.execute_eda, request(dataset, Step.BROWSER_AGENT, "pass\n"))
    )
    assert await asyncio.to_thread(state.received.wait, 10)

    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    for _ in range(40):
        if state.disconnected:
            break
        await asyncio.sleep(0.05)
    assert state.disconnected == 1
    assert store.list(RUN) == []  # nothing published for a cancelled attempt


# --- With Temporal ----------------------------------------------------------------------------


@workflow.defn(sandboxed=False)
class ExecuteEdaOnce:
    """Calls execute_eda once with a heartbeat timeout far shorter than the job."""

    @workflow.run
    async def run(self, job: ExecutionRequest) -> ExecutionResult:
        return await workflow.execute_activity(
            "execute_eda",
            job,
            result_type=ExecutionResult,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=1),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def run_on_temporal(
    env: WorkflowEnvironment, activities: ExecutionActivities, job: ExecutionRequest
) -> ExecutionResult:
    task_queue = f"executors-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[ExecuteEdaOnce],
        activities=[activities.execute_eda],
    ):
        return await env.client.execute_workflow(
            ExecuteEdaOnce.run, job, id=f"eda-{uuid.uuid4()}", task_queue=task_queue
        )


async def test_a_remote_job_longer_than_the_heartbeat_timeout_completes_on_temporal(
    dev_server_env: WorkflowEnvironment,
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    browser_agent: tuple[ServerThread, ExecutorState],
) -> None:
    running, state = browser_agent
    state.delay_seconds = 3  # three heartbeat timeouts
    activities = ExecutionActivities(make_settings(tmp_path, browser_agent_url=running.url), store)

    result = await run_on_temporal(
        dev_server_env, activities, request(dataset, Step.BROWSER_AGENT, "print('slow')\n")
    )

    assert result.exit_code == 0
    assert result.stdout_tail == "slow\n"
    assert result.duration_seconds >= 3
    assert len(state.payloads) == 1  # one attempt, never timed out


async def test_without_heartbeats_the_same_job_times_out_on_temporal(
    dev_server_env: WorkflowEnvironment,
    tmp_path: Path,
    dataset: Path,
    store: ArtifactStore,
    browser_agent: tuple[ServerThread, ExecutorState],
) -> None:
    """The control for the test above: it is the heartbeats that keep the activity alive."""
    running, state = browser_agent
    state.delay_seconds = 3
    activities = ExecutionActivities(
        make_settings(tmp_path, browser_agent_url=running.url), store, heartbeat_seconds=60
    )

    with pytest.raises(WorkflowFailureError) as caught:
        await run_on_temporal(
            dev_server_env, activities, request(dataset, Step.BROWSER_AGENT, "print('slow')\n")
        )

    activity_error = caught.value.cause
    assert isinstance(activity_error, ActivityError)
    assert isinstance(activity_error.cause, TimeoutError)
    assert activity_error.cause.type is TimeoutType.HEARTBEAT


# --- Metrics ----------------------------------------------------------------------------------


def test_metrics_are_flattened_to_numbers_and_short_strings() -> None:
    raw = {
        "accuracy": 0.91,
        "n": 3,
        "passed": False,
        "model": "RandomForest",
        "per_class": {"yes": {"f1": 0.8}, "no": {"f1": 0.9}},
        "confusion": [[1, 2], [3, 4]],
        "missing": None,
        "inf": float("inf"),
        "long": "x" * 500,
    }

    flat = flatten_metrics(raw)

    assert flat == {
        "accuracy": 0.91,
        "n": 3.0,
        "passed": 0.0,
        "model": "RandomForest",
        "per_class.yes.f1": 0.8,
        "per_class.no.f1": 0.9,
        "inf": "inf",
        "long": "x" * 200,
    }


def test_unlocked_scratch_from_before_worker_locks_is_swept_by_age(
    tmp_path: Path, store: ArtifactStore
) -> None:
    activities = ExecutionActivities(make_settings(tmp_path), store)  # 30 s execution limit
    old = activities.scratch.root / "wf-dead-ml_worker-v1-abc"
    recent = activities.scratch.root / "wf-live-ml_worker-v1-def"
    for folder in (old, recent):
        (folder / "work").mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    assert activities.sweep_stale_scratch() == [old.name]
    assert not old.exists() and recent.exists()
    assert activities.scratch_dir.is_dir()  # its own folder stays, however old
