"""A worker lost while an agent waits on its model: the step is retried on a new worker within
the heartbeat timeout, not after the 10-minute start-to-close timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.llm_standin import FakeLlmServer, Recorded, Scripted, openai_error, service_using
from tests.sample_data import make_churn
from tests.test_service_integration import start, wait_until
from workflows.contract import ACTIVITY_TIMEOUTS, ActivityName

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT = ACTIVITY_TIMEOUTS[ActivityName.RESEARCH][1]


def test_a_worker_killed_during_research_is_replaced_within_a_minute(
    dev_server_env: WorkflowEnvironment, llm: FakeLlmServer, tmp_path: Path
) -> None:
    assert HEARTBEAT_TIMEOUT is not None and HEARTBEAT_TIMEOUT.total_seconds() <= 30
    dataset = tmp_path / "churn.csv"
    make_churn(rows=300).to_csv(dataset, index=False)
    asked: list[float] = []
    first_call = threading.Event()

    def respond(_: Recorded) -> Scripted:
        asked.append(time.monotonic())
        if len(asked) == 1:
            first_call.set()
            return Scripted(delay=120)  # the model "thinks" far longer than the test waits
        # The retry on the new worker: end the run at once, with a reason the test can see.
        return openai_error(400, "stand-in: second research call reached the model")

    llm.reset()
    llm.responder = respond
    address = dev_server_env.client.service_client.config.target_host
    with service_using(
        llm, address, tmp_path / "data", LLM_TIMEOUT_SECONDS="300", DATASET_ROOTS=str(tmp_path)
    ) as service:
        with httpx.Client(base_url=service.base_url, timeout=30) as api:
            workflow_id = start(api, str(dataset))
            assert first_call.wait(120), "research never asked the model"
            assert service.worker is not None
            service.worker.kill()  # SIGKILL: nothing reports the step as failed
            service.worker.wait(timeout=10)
            killed_at = time.monotonic()
            service.start_worker()

            failed = wait_until(api, workflow_id, lambda b: b["status"] == "failed", timeout=90)

    assert len(asked) == 2
    replaced_after = asked[1] - killed_at
    assert replaced_after < 60, f"the step came back after {replaced_after:.0f} s"
    assert failed["current_step"] == "research_agent"
    assert "second research call reached the model" in failed["last_error"]
    llm.reset()
