"""With PAYLOAD_ENCRYPTION_KEYS, Temporal's history holds nothing readable; the codec reads it.

The real dev server, `python worker.py` and the API with encryption and API keys on. The raw
history is read with a client that has no codec, the way anyone with access to the Temporal
server (or its database) would read it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.testing import WorkflowEnvironment

from payload_codec import KEY_ID_METADATA
from tests.conftest import TEMPORAL_CLI, ServiceProcesses
from tests.sample_data import make_churn

pytestmark = pytest.mark.integration

MARKER = uuid.uuid4().hex[:12]
GOAL_MARKER = f"goalmarker{MARKER}"
DATASET_MARKER = f"datasetmarker{MARKER}"
GOAL = f"Build a customer churn prediction model for project {GOAL_MARKER}"
EDA_CODE_SIGN = "import pandas"
ENCRYPTED = "binary/encrypted"

OLD_KEY = base64.b64encode(os.urandom(32)).decode()
NEW_KEY = base64.b64encode(os.urandom(32)).decode()
ADMIN_KEY = f"orc_admin_{uuid.uuid4().hex}"
VIEWER_KEY = f"orc_viewer_{uuid.uuid4().hex}"


def key_file(folder: Path) -> Path:
    """API_KEYS_FILE: only each key's SHA-256 is stored."""

    def entry(name: str, role: str, key: str) -> dict[str, object]:
        return {
            "name": name,
            "roles": [role],
            "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        }

    path = folder / "api-keys.json"
    path.write_text(
        json.dumps([entry("ops", "admin", ADMIN_KEY), entry("ui", "viewer", VIEWER_KEY)])
    )
    return path


@pytest.fixture(scope="module")
def encrypted_service(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    folder = tmp_path_factory.mktemp("encrypted-service")
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        folder / "data",
        PAYLOAD_ENCRYPTION_KEYS=f"k1:{OLD_KEY}",
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(key_file(folder)),
        APPROVAL_TIMEOUT_SECONDS="600",
    )
    processes.start_worker()
    processes.start_api()
    try:
        yield processes
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def secret_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp(DATASET_MARKER) / "churn.csv"
    make_churn(rows=600).to_csv(path, index=False)
    return str(path)


@pytest.fixture
def api(encrypted_service: ServiceProcesses) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=encrypted_service.base_url, timeout=30, headers=headers) as client:
        yield client


def wait_for(
    api: httpx.Client,
    service: ServiceProcesses,
    workflow_id: str,
    ready: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert service.worker is not None and service.worker.poll() is None, "the worker exited"
        response = api.get(f"/workflow/{workflow_id}/status")
        assert response.status_code == 200, response.text
        body = response.json()
        if ready(body):
            return body
        assert body["status"] not in ("failed", "cancelled", "timed_out"), body
        time.sleep(0.3)
    raise AssertionError(f"{workflow_id} never got there; last status: {body}")


async def raw_history(env: WorkflowEnvironment, workflow_id: str) -> bytes:
    """Every event as the server stores it, fetched by a client that holds no key."""
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return History(events=history.events).SerializeToString() + history.to_json().encode()


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every Payload anywhere inside a protobuf message (inputs, results, memo, failures, …)."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            values = [value]
        elif field.message_type.GetOptions().map_entry:
            values = list(value.values())
        else:
            values = list(value)  # a repeated field
        for item in values:
            if isinstance(item, Message):
                yield from payloads_in(item)


async def key_ids_in_history(env: WorkflowEnvironment, workflow_id: str) -> set[str]:
    history = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return {
        payload.metadata[KEY_ID_METADATA].decode()
        for event in history.events
        for payload in payloads_in(event)
        if KEY_ID_METADATA in payload.metadata
    }


def temporal_show(service: ServiceProcesses, workflow_id: str, *codec: str) -> str:
    done = subprocess.run(
        [str(TEMPORAL_CLI), "workflow", "show", "--workflow-id", workflow_id, "--output", "json",
         "--address", service.env["TEMPORAL_ADDRESS"], *codec],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def payload_texts(node: object) -> list[str]:
    """Every payload in `temporal … --output json` output: its metadata and data, base64-decoded."""
    if isinstance(node, list):
        return [text for item in node for text in payload_texts(item)]
    if not isinstance(node, dict):
        return []
    if isinstance(node.get("metadata"), dict) and "data" in node:
        parts = [*node["metadata"].values(), node["data"]]
        return [" ".join(base64.b64decode(part).decode(errors="replace") for part in parts)]
    return [text for value in node.values() for text in payload_texts(value)]


def assert_nothing_readable(history: bytes) -> None:
    for secret in (GOAL_MARKER, DATASET_MARKER, EDA_CODE_SIGN):
        assert secret.encode() not in history, f"{secret!r} is readable in the raw history"
    # Not vacuous: the history does carry payloads, sealed.
    assert ENCRYPTED.encode() in history


async def test_history_is_unreadable_without_the_codec_and_readable_with_it(
    api: httpx.Client,
    dev_server_env: WorkflowEnvironment,
    encrypted_service: ServiceProcesses,
    secret_dataset: str,
):
    started = api.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": secret_dataset})
    assert started.status_code == 200, started.text
    workflow_id = started.json()["workflow_id"]
    wait_for(
        api,
        encrypted_service,
        workflow_id,
        lambda b: b["status"] == "awaiting_approval",
        timeout=120,
    )

    # The service itself reads everything (so the secrets really are in the run).
    state = api.get(f"/workflow/{workflow_id}").json()
    assert state["user_goal"] == GOAL
    assert EDA_CODE_SIGN in state["code_context"]["eda_code"]["code"]
    assert DATASET_MARKER in state["dataset_url"]

    assert_nothing_readable(await raw_history(dev_server_env, workflow_id))
    assert GOAL_MARKER not in temporal_show(encrypted_service, workflow_id)

    codec_url = f"{encrypted_service.base_url}/codec"
    shown = temporal_show(
        encrypted_service, workflow_id,
        "--codec-endpoint", codec_url, "--codec-auth", f"Bearer {VIEWER_KEY}",
    )  # fmt: skip
    readable = payload_texts(json.loads(shown))
    assert any(GOAL_MARKER in text for text in readable)
    assert any(DATASET_MARKER in text for text in readable)
    assert not any(ENCRYPTED in text for text in readable)  # the codec left nothing sealed

    api.post(f"/workflow/{workflow_id}/cancel")


def test_the_codec_endpoint_refuses_callers_without_credentials(
    encrypted_service: ServiceProcesses,
):
    body = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                          "data": base64.b64encode(b'"x"').decode()}]}  # fmt: skip
    anonymous = httpx.post(f"{encrypted_service.base_url}/codec/decode", json=body, timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    wrong = httpx.post(
        f"{encrypted_service.base_url}/codec/decode",
        json=body,
        headers={"Authorization": "Bearer orc_not_a_key"},
        timeout=30,
    )
    assert wrong.status_code == 401, wrong.text
    viewer = httpx.post(
        f"{encrypted_service.base_url}/codec/decode",
        json=body,
        headers={"Authorization": f"Bearer {VIEWER_KEY}"},
        timeout=30,
    )
    assert viewer.status_code == 200, viewer.text


async def test_a_run_completes_across_a_key_rotation(
    api: httpx.Client,
    dev_server_env: WorkflowEnvironment,
    encrypted_service: ServiceProcesses,
    secret_dataset: str,
):
    started = api.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": secret_dataset})
    assert started.status_code == 200, started.text
    workflow_id = started.json()["workflow_id"]
    wait_for(
        api,
        encrypted_service,
        workflow_id,
        lambda b: b["status"] == "awaiting_approval",
        timeout=120,
    )

    # Rotate: the new key writes, the old one still reads what the run stored before.
    encrypted_service.stop()
    encrypted_service.env["PAYLOAD_ENCRYPTION_KEYS"] = f"k2:{NEW_KEY},k1:{OLD_KEY}"
    encrypted_service.start_worker()
    encrypted_service.start_api()

    approved = api.post(f"/workflow/{workflow_id}/approve")
    assert approved.status_code == 200, approved.text
    done = wait_for(
        api, encrypted_service, workflow_id, lambda b: b["status"] == "completed", timeout=240
    )
    assert done["current_step"] == "complete"
    state = api.get(f"/workflow/{workflow_id}").json()
    assert float(state["code_context"]["training_result"]["metrics"]["score"]) > 0

    history = await raw_history(dev_server_env, workflow_id)
    assert_nothing_readable(history)
    # Both keys wrote part of this run: before the rotation k1, after it k2.
    assert await key_ids_in_history(dev_server_env, workflow_id) == {"k1", "k2"}
