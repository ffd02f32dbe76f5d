"""Webhooks: tell WEBHOOK_URLS, in signed JSON or Slack's format, when a run needs a person or ends.

Every POST carries `X-Orchestrator-Timestamp` (Unix seconds) and, when WEBHOOK_SECRET is set,
`X-Orchestrator-Signature: sha256=<hex>`, the HMAC-SHA256 of `f"{timestamp}.{body}"` under the
secret. Signing the timestamp with the body lets a receiver refuse a captured request replayed
later: check the signature with `verify_signature`, then that the timestamp is recent.

Delivery is one activity per event and one POST per URL. A receiver that is down or answers
with an error fails the attempt with a retryable error, so Temporal retries it with backoff;
the URLs already served are kept in the heartbeat details so a retry normally goes only to
the others, and `X-Orchestrator-Delivery` (stable across retries) lets a receiver drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from settings import Settings
from workflows.contract import ActivityName, ErrorType
from workflows.models import RunEvent

SIGNATURE_HEADER = "X-Orchestrator-Signature"
TIMESTAMP_HEADER = "X-Orchestrator-Timestamp"
EVENT_HEADER = "X-Orchestrator-Event"
DELIVERY_HEADER = "X-Orchestrator-Delivery"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_SECONDS = 300
REQUEST_TIMEOUT_SECONDS = 10.0
_RESPONSE_EXCERPT_CHARS = 200

_HEADLINES = {
    "awaiting_approval": "Run {id} is waiting for your approval",
    "completed": "Run {id} completed",
    "failed": "Run {id} failed",
    "timed_out": "Run {id} timed out",
}


# --- Signing ------------------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: str | int, body: str | bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`: "sha256=<hex>"."""
    message = _as_bytes(str(timestamp)) + b"." + _as_bytes(body)
    digest = hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: str | bytes,
    header: str | None,
    *,
    tolerance_seconds: float | None = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """For receivers: True when `header` signs this raw body and timestamp, and the timestamp is
    within `tolerance_seconds` of now (None skips the age check). Compare in constant time."""
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    if tolerance_seconds is not None:
        try:
            sent_at = int(timestamp)
        except (TypeError, ValueError):
            return False
        current = time.time() if now is None else now
        if abs(current - sent_at) > tolerance_seconds:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


# --- Formats ------------------------------------------------------------------------------------


def event_payload(event: RunEvent) -> dict[str, Any]:
    """The JSON format: the event itself, with "event" naming its kind for routers."""
    return {"event": event.kind, **event.model_dump(mode="json")}


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters; everything else is literal.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(event: RunEvent) -> dict[str, Any]:
    """Slack's incoming-webhook format: a plain `text` fallback plus blocks with a button."""
    headline = _HEADLINES[event.kind].format(id=event.workflow_id)
    details = [f"*Goal:* {_slack_escape(event.user_goal)}", f"*Step:* {event.step.value}"]
    if event.version is not None:
        details.append(f"*EDA code version:* {event.version}")
    if event.message:
        details.append(_slack_escape(event.message))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(details)[:3000]}},
    ]
    if event.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the run"},
                        "url": event.link,
                    }
                ],
            }
        )
    text = f"{headline}: {event.user_goal}" + (f" <{event.link}>" if event.link else "")
    return {"text": text, "blocks": blocks}


def run_link(public_base_url: str, workflow_id: str) -> str:
    return f"{public_base_url.rstrip('/')}/ui/runs/{workflow_id}"


def delivery_id(event: RunEvent) -> str:
    """Stable across retries, so a receiver can drop a delivery it already handled."""
    key = f"{event.workflow_id}|{event.kind}|{event.version}|{event.at.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# --- The activity -------------------------------------------------------------------------------


class NotificationActivities:
    """Webhook delivery; `transport` lets tests route requests without a network."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self.transport = transport

    def render(self, event: RunEvent) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one delivery of `event`, signed when a secret is set."""
        payload = (
            slack_payload(event)
            if self.settings.webhook_format == "slack"
            else event_payload(event)
        )
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "orchestrator-webhooks/1",
            TIMESTAMP_HEADER: timestamp,
            EVENT_HEADER: event.kind,
            DELIVERY_HEADER: delivery_id(event),
        }
        if self.settings.webhook_secret is not None:
            secret = self.settings.webhook_secret.get_secret_value()
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        return body, headers

    @activity.defn(name=ActivityName.NOTIFY)
    async def notify(self, event: RunEvent) -> list[str]:
        """POST `event` to every WEBHOOK_URLS entry; returns the URLs that took it.

        Raises a retryable WebhookUndelivered naming each receiver that did not, after trying
        them all, so one receiver that is down neither hides nor delays the others.
        """
        if not event.link:
            event = event.model_copy(
                update={"link": run_link(self.settings.public_base_url, event.workflow_id)}
            )
        delivered = _already_delivered()
        pending = [url for url in self.settings.webhook_targets if url not in delivered]
        if not pending:
            return delivered
        body, headers = self.render(event)
        failures: list[str] = []
        async with httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False, transport=self.transport
        ) as client:
            for url in pending:
                problem = await _post(client, url, body, headers)
                if problem is None:
                    delivered.append(url)
                    _record_delivered(delivered)
                else:
                    failures.append(problem)
        if failures:
            raise ApplicationError(
                f"Webhook for {event.kind} of run {event.workflow_id} not delivered: "
                + "; ".join(failures)
                + ". Temporal retries it; the run goes on either way.",
                type=ErrorType.WEBHOOK_UNDELIVERED,
                non_retryable=False,
            )
        return delivered


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> str | None:
    """None when the receiver took it (2xx); otherwise what went wrong, for the error message."""
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TransportError as error:
        return f"{_redacted(url)} unreachable ({type(error).__name__})"
    if response.is_success:
        return None
    excerpt = response.text[:_RESPONSE_EXCERPT_CHARS].strip()
    return f"{_redacted(url)} answered {response.status_code}" + (f": {excerpt}" if excerpt else "")


def _redacted(url: str) -> str:
    # Webhook URLs often carry their secret in the path (Slack's do): name only the host.
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


def _already_delivered() -> list[str]:
    """URLs an earlier attempt of this activity served, from its last heartbeat."""
    if not activity.in_activity():
        return []
    details: Sequence[Any] = activity.info().heartbeat_details
    if details and isinstance(details[0], list):
        return [str(url) for url in details[0]]
    return []


def _record_delivered(delivered: list[str]) -> None:
    if activity.in_activity():
        activity.heartbeat(list(delivered))
