"""Webhook delivery against real HTTP receivers on 127.0.0.1: signatures, formats, retries."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.notifications import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationActivities,
    sign,
    verify_signature,
)
from settings import Settings
from tests.conftest import ServiceProcesses, free_port
from workflows.contract import (
    ACTIVITY_TIMEOUTS,
    NON_RETRYABLE_ERRORS,
    ActivityName,
    ErrorType,
    retry_policy,
)
from workflows.models import RunEvent, RunState, RunStatus, Step

SECRET = "s3cret-for-tests"
AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@dataclasses.dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A webhook receiver that records what it gets and answers with the statuses it is given."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self.statuses = list(statuses or [])  # consumed in order; 200 once they run out
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.deliveries.append(
                    Delivery(self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"receiver says no" if status >= 400 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/orchestrator"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def settings_for(*urls: str, **extra: Any) -> Settings:
    return Settings(
        webhook_urls=",".join(urls),
        webhook_secret=SECRET,
        public_base_url="https://orchestrator.example.com/",
        **extra,
    )


def event(kind: str = "awaiting_approval", **extra: Any) -> RunEvent:
    fields: dict[str, Any] = {
        "kind": kind,
        "workflow_id": "wf-notify-1",
        "status": RunStatus.AWAITING_APPROVAL,
        "step": Step.HUMAN_APPROVAL,
        "user_goal": "Build a <churn> model & explain it",
        "message": "EDA code version 2 is waiting for a decision.",
        "version": 2,
        "at": AT,
        **extra,
    }
    return RunEvent.model_validate(fields)


async def test_json_event_is_signed_over_timestamp_and_body_and_links_to_the_run(
    receiver: Receiver,
):
    delivered = await ActivityEnvironment().run(
        NotificationActivities(settings_for(receiver.url)).notify, event()
    )

    assert delivered == [receiver.url]
    [delivery] = receiver.deliveries
    assert delivery.path == "/hooks/orchestrator"
    timestamp = delivery.headers[TIMESTAMP_HEADER]
    signature = delivery.headers[SIGNATURE_HEADER]
    assert abs(int(timestamp) - time.time()) < 60
    assert verify_signature(SECRET, timestamp, delivery.body, signature)
    # The signature covers the timestamp: the same body with another timestamp is refused.
    assert not verify_signature(SECRET, str(int(timestamp) - 1), delivery.body, signature)
    assert not verify_signature("another-secret", timestamp, delivery.body, signature)
    assert not verify_signature(SECRET, timestamp, delivery.body + b" ", signature)

    body = json.loads(delivery.body)
    assert body["event"] == "awaiting_approval"
    assert body["workflow_id"] == "wf-notify-1"
    assert body["version"] == 2
    assert body["status"] == "awaiting_approval"
    assert body["link"] == "https://orchestrator.example.com/ui/runs/wf-notify-1"
    assert delivery.headers["Content-Type"] == "application/json"


async def test_slack_format_has_text_and_blocks_with_a_button_to_the_run(receiver: Receiver):
    await ActivityEnvironment().run(
        NotificationActivities(settings_for(receiver.url, webhook_format="slack")).notify,
        event("failed", status=RunStatus.FAILED, step=Step.ML_WORKER, version=None),
    )

    [delivery] = receiver.deliveries
    body = json.loads(delivery.body)
    assert set(body) == {"text", "blocks"}
    assert "wf-notify-1 failed" in body["text"]
    link = "https://orchestrator.example.com/ui/runs/wf-notify-1"
    assert link in body["text"]
    section = next(block for block in body["blocks"] if block["type"] == "section")
    assert section["text"]["type"] == "mrkdwn"
    # Slack's control characters in the goal are escaped, not interpreted.
    assert "&lt;churn&gt; model &amp; explain it" in section["text"]["text"]
    [button] = next(b for b in body["blocks"] if b["type"] == "actions")["elements"]
    assert button["url"] == link
    assert verify_signature(
        SECRET,
        delivery.headers[TIMESTAMP_HEADER],
        delivery.body,
        delivery.headers[SIGNATURE_HEADER],
    )


async def test_receiver_answering_500_fails_the_attempt_with_a_retryable_error():
    with Receiver(statuses=[500]) as failing:
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(
                NotificationActivities(settings_for(failing.url)).notify, event()
            )
    error = raised.value
    assert error.type == ErrorType.WEBHOOK_UNDELIVERED
    assert not error.non_retryable
    assert error.type not in NON_RETRYABLE_ERRORS
    assert "answered 500" in str(error) and "wf-notify-1" in str(error)
    # Only the host is named: webhook paths often hold the receiver's own secret.
    assert "/hooks/orchestrator" not in str(error)
    assert len(failing.deliveries) == 1


async def test_receiver_that_is_down_fails_the_attempt_with_a_retryable_error(receiver: Receiver):
    down = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(
            NotificationActivities(settings_for(down, receiver.url)).notify, event()
        )
    assert raised.value.type == ErrorType.WEBHOOK_UNDELIVERED
    assert not raised.value.non_retryable
    assert "unreachable" in str(raised.value)
    # The receiver that is up still got its delivery in the same attempt.
    assert len(receiver.deliveries) == 1


async def test_retry_skips_receivers_an_earlier_attempt_served(receiver: Receiver):
    with Receiver() as already_served:
        environment = ActivityEnvironment()
        beats: list[Any] = []
        environment.on_heartbeat = lambda *details: beats.append(details)
        environment.info = dataclasses.replace(
            environment.info, attempt=2, heartbeat_details=[[already_served.url]]
        )
        delivered = await environment.run(
            NotificationActivities(settings_for(already_served.url, receiver.url)).notify, event()
        )
    assert already_served.deliveries == []
    assert len(receiver.deliveries) == 1
    assert delivered == [already_served.url, receiver.url]
    assert beats[-1] == ([already_served.url, receiver.url],)


async def test_no_webhook_urls_sends_nothing_and_succeeds():
    assert await ActivityEnvironment().run(NotificationActivities(Settings()).notify, event()) == []


async def test_without_a_secret_the_body_is_sent_unsigned(receiver: Receiver):
    settings = Settings(webhook_urls=receiver.url)
    await ActivityEnvironment().run(NotificationActivities(settings).notify, event())
    [delivery] = receiver.deliveries
    assert SIGNATURE_HEADER not in delivery.headers
    assert TIMESTAMP_HEADER in delivery.headers


def test_event_never_carries_the_dataset_url_and_clips_the_goal():
    state = RunState(
        workflow_id="wf-notify-2",
        user_goal="predict churn " * 100,
        dataset_url="https://user:token@data.example.com/churn.csv?sig=abc",
        status=RunStatus.COMPLETED,
        current_step=Step.COMPLETE,
        created_at=AT,
        updated_at=AT,
    )
    made = RunEvent.about(state, "completed", message="Done. " * 500)
    dumped = made.model_dump_json()
    assert "data.example.com" not in dumped and "token" not in dumped
    assert len(made.user_goal) <= 200 and made.user_goal.endswith("…")
    assert len(made.message) <= 1000
    assert made.step == Step.COMPLETE and made.at == AT


def test_verify_signature_checks_value_format_and_age():
    body = b'{"event":"completed"}'
    now = 1_800_000_000
    header = sign(SECRET, now, body)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verify_signature(SECRET, str(now), body, header, now=now + 10)
    assert verify_signature(SECRET, now, body.decode(), header, now=now)
    # A captured request replayed later than the tolerance is refused.
    assert not verify_signature(SECRET, now, body, header, now=now + 301)
    assert verify_signature(SECRET, now, body, header, now=now + 3600, tolerance_seconds=None)
    assert not verify_signature(SECRET, now, body, header.removeprefix("sha256="), now=now)
    assert not verify_signature(SECRET, now, body, None, now=now)
    assert not verify_signature(SECRET, "yesterday", body, header, now=now)


def test_settings_refuse_a_webhook_url_that_is_not_http():
    with pytest.raises(ValueError, match="must start with http"):
        Settings(webhook_urls="https://ok.example.com/hook, ftp://files.example.com/hook")
    assert Settings(webhook_urls=" https://a.example/h ,, http://b.example/h ").webhook_targets == [
        "https://a.example/h",
        "http://b.example/h",
    ]


# --- Through a real worker: the contract's retry policy, as the workflow will use it ------------


@workflow.defn(sandboxed=False)
class NotifyOnce:
    """Calls the activity the way the run does: by name, with the contract's policy, and a
    delivery that never succeeds does not fail the caller."""

    @workflow.run
    async def run(self, notice: RunEvent) -> str:
        start_to_close, _, attempts = ACTIVITY_TIMEOUTS[ActivityName.NOTIFY]
        try:
            delivered = await workflow.execute_activity(
                ActivityName.NOTIFY,
                notice,
                start_to_close_timeout=start_to_close,
                schedule_to_close_timeout=timedelta(minutes=10),
                retry_policy=retry_policy(attempts),
                result_type=list[str],
            )
        except ActivityError:
            return "undelivered"
        return f"delivered to {len(delivered)}"


async def run_notify(env: WorkflowEnvironment, settings: Settings) -> str:
    queue = f"tq-notify-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[NotifyOnce],
        activities=[NotificationActivities(settings).notify],
    ):
        return await env.client.execute_workflow(
            NotifyOnce.run, event(), id=f"wf-notify-{uuid.uuid4().hex[:8]}", task_queue=queue
        )


async def test_temporal_retries_a_failing_receiver_until_it_takes_the_event(
    time_skipping_env: WorkflowEnvironment,
):
    with Receiver(statuses=[503, 500]) as flaky:
        result = await run_notify(time_skipping_env, settings_for(flaky.url))
    assert result == "delivered to 1"
    assert len(flaky.deliveries) == 3
    assert len({d.headers[DELIVERY_HEADER] for d in flaky.deliveries}) == 1


async def test_a_receiver_down_for_good_never_fails_the_caller(
    time_skipping_env: WorkflowEnvironment,
):
    down = f"http://127.0.0.1:{free_port()}/hook"
    try:
        result = await run_notify(time_skipping_env, settings_for(down))
    except WorkflowFailureError as error:  # pragma: no cover - the assertion below explains
        raise AssertionError("an undeliverable webhook failed the workflow") from error
    assert result == "undelivered"


# --- The whole service: a run tells the receiver when it needs a person and when it ends --------


@pytest.mark.integration
def test_a_run_notifies_signed_events_for_approval_and_completion(dev_server_env, tmp_path):
    with Receiver() as hooks:
        service = ServiceProcesses(
            dev_server_env.client.service_client.config.target_host,
            tmp_path / "data",
            WEBHOOK_URLS=hooks.url,
            WEBHOOK_SECRET=SECRET,
            PUBLIC_BASE_URL="https://desk.example.com",
        )
        service.start_worker()
        service.start_api()
        try:
            with httpx.Client(base_url=service.base_url, timeout=30) as api:
                secret_url = "examples/churn.csv"
                started = api.post(
                    "/workflow/start",
                    json={"user_goal": "Predict churn", "dataset_url": secret_url},
                )
                assert started.status_code == 200, started.text
                workflow_id = started.json()["workflow_id"]
                first = wait_for_deliveries(hooks, 1)
                assert api.post(f"/workflow/{workflow_id}/approve").status_code == 200
                deliveries = wait_for_deliveries(hooks, 2, timeout=180)
        finally:
            service.stop()
    kinds = [json.loads(d.body)["event"] for d in deliveries]
    assert kinds == ["awaiting_approval", "completed"], kinds
    approval = json.loads(first[0].body)
    assert approval["workflow_id"] == workflow_id and approval["version"] == 1
    assert approval["link"] == f"https://desk.example.com/ui/runs/{workflow_id}"
    for delivery in deliveries:
        assert verify_signature(
            SECRET,
            delivery.headers[TIMESTAMP_HEADER],
            delivery.body,
            delivery.headers[SIGNATURE_HEADER],
        )
        assert secret_url.encode() not in delivery.body  # the dataset's address is never sent


def wait_for_deliveries(receiver: Receiver, count: int, timeout: float = 120) -> list[Delivery]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(receiver.deliveries) >= count:
            return list(receiver.deliveries)
        time.sleep(0.2)
    raise AssertionError(f"{len(receiver.deliveries)} of {count} webhook deliveries arrived")
