"""Live progress of a run as Server-Sent Events: one shared poller per run fans out to watchers.

However many browsers watch a run, each API process reads that run once per
EVENTS_POLL_SECONDS: the first subscriber starts a poller task, the last one to leave stops it.
Each read is compared with the previous one and the differences (status or step, new messages,
new artifacts) go to every subscriber.

Event ids come from the run itself, never from this process: `<messages>-<status>-<artifacts>`
is the number of messages seen plus short digests of the status fields and of the artifact
list. A client that reconnects with `Last-Event-ID` therefore gets exactly what it missed, from
any replica, and nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.errors import ApiError
from api.openapi_responses import GUARDED, error_responses
from api.runs import RunService
from api.security import Principal, Role, require_role
from workflows.models import ArtifactRef, RunState

logger = logging.getLogger("orchestrator.api.events")

ReadState = Callable[[str], Awaitable[RunState]]
ListArtifacts = Callable[[str], Awaitable[list[ArtifactRef]]]

# A subscriber that falls this far behind is disconnected; its browser reconnects with
# Last-Event-ID and catches up from the run itself, so nothing is lost and memory stays bounded.
SUBSCRIBER_QUEUE_LIMIT = 256
# Comment lines keep proxies from closing an idle stream while a run waits for a person.
PING_SECONDS = 15


@dataclass(frozen=True)
class RunEvent:
    kind: str  # "status", "message", "artifacts", "end" or "unavailable"
    data: dict[str, Any]
    id: str | None  # None for "unavailable": a hiccup of this process is not part of the run


def _digest(value: object) -> str:
    encoded = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:12]


@dataclass(frozen=True)
class RunSnapshot:
    """What watchers see of a run at one read."""

    state: RunState
    status: dict[str, Any]
    artifacts: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, state: RunState, artifacts: list[ArtifactRef]) -> RunSnapshot:
        eda = state.code_context.eda_code
        status = {
            "status": state.status.value,
            "current_step": state.current_step.value,
            "next_step": state.next_step.value if state.next_step else None,
            "human_approval": state.human_approval.value,
            "eda_version": eda.version if eda else None,
            "rejection_count": state.rejection_count,
            "critic_rounds": state.critic_rounds,
            "last_error": state.last_error,
            "updated_at": state.updated_at.isoformat(),
            "completed_at": state.completed_at.isoformat() if state.completed_at else None,
        }
        return cls(state, status, tuple(ref.model_dump() for ref in artifacts))

    @property
    def final(self) -> bool:
        return self.state.status.is_final

    @property
    def cursor(self) -> Cursor:
        # No artifacts yet is the empty digest, so a fresh watcher is not told of an empty list.
        artifacts = _digest(self.artifacts) if self.artifacts else ""
        return Cursor(len(self.state.messages), _digest(self.status), artifacts)


@dataclass(frozen=True)
class Cursor:
    """How far a client has seen a run; the text form is the SSE event id."""

    messages: int
    status: str
    artifacts: str

    def __str__(self) -> str:
        return f"{self.messages}-{self.status}-{self.artifacts}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """A Last-Event-ID; anything unrecognisable means "send everything"."""
        parts = (text or "").strip().split("-")
        if len(parts) == 3 and parts[0].isdigit():
            return cls(int(parts[0]), parts[1], parts[2])
        return START


START = Cursor(0, "", "")


def events_between(
    seen: Cursor, known_artifacts: frozenset[str] | None, snapshot: RunSnapshot
) -> list[RunEvent]:
    """What a client at `seen` has not been told about `snapshot`, in order, each with its id.

    `known_artifacts` are the artifact names the client has; None when only the cursor is known
    (a reconnect), in which case a changed list is announced whole.
    """
    events: list[RunEvent] = []
    target = snapshot.cursor
    position = seen
    if position.status != target.status:
        position = Cursor(position.messages, target.status, position.artifacts)
        events.append(RunEvent("status", dict(snapshot.status), str(position)))
    messages = snapshot.state.messages
    # A cursor beyond the run's messages (another run's id pasted in) is treated as the end.
    for index in range(min(position.messages, len(messages)), len(messages)):
        message = messages[index]
        position = Cursor(index + 1, position.status, position.artifacts)
        data = {"index": index, **message.model_dump(mode="json")}
        events.append(RunEvent("message", data, str(position)))
    if position.artifacts != target.artifacts:
        position = Cursor(position.messages, position.status, target.artifacts)
        names = [entry["name"] for entry in snapshot.artifacts]
        added = [name for name in names if known_artifacts is None or name not in known_artifacts]
        data = {"artifacts": list(snapshot.artifacts), "added": added}
        events.append(RunEvent("artifacts", data, str(position)))
    if snapshot.final:
        events.append(RunEvent("end", {"status": snapshot.status["status"]}, str(target)))
    return events


_CLOSE = RunEvent("close", {}, None)  # internal: ends a subscriber's stream


@dataclass(eq=False)
class Subscription:
    """One watcher's queue of events; iterate it, and close it when the client goes away."""

    watch: RunWatch
    seen: Cursor
    queue: asyncio.Queue[RunEvent] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_LIMIT)
    )
    waiting_for_first_read: bool = True
    closed: bool = False

    def deliver(self, events: list[RunEvent]) -> None:
        if self.closed:
            return
        try:
            for event in events:
                self.queue.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning(
                "An event watcher fell behind; disconnecting it so it resumes from its last id",
                extra={"workflow_id": self.watch.workflow_id},
            )
            self.disconnect()

    def disconnect(self) -> None:
        if self.closed:
            return
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_CLOSE)

    def close(self) -> None:
        self.closed = True
        self.watch.leave(self)

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        while True:
            event = await self.queue.get()
            if event is _CLOSE:
                return
            yield event
            if event.kind == "end":
                return


class RunWatch:
    """The one poller of one run in this process, and who listens to it."""

    def __init__(self, hub: EventHub, workflow_id: str) -> None:
        self.hub = hub
        self.workflow_id = workflow_id
        self.subscribers: set[Subscription] = set()
        self.snapshot: RunSnapshot | None = None
        self.first_read = asyncio.Event()
        self.first_error: ApiError | None = None
        self.unavailable: str | None = None
        self.task = asyncio.create_task(self._poll(), name=f"events-{workflow_id}")

    def join(self, seen: Cursor) -> Subscription:
        subscription = Subscription(self, seen)
        self.subscribers.add(subscription)
        if self.snapshot is not None:
            subscription.waiting_for_first_read = False
            subscription.deliver(events_between(seen, None, self.snapshot))
        return subscription

    def leave(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)
        if not self.subscribers:
            self.stop()

    def stop(self) -> None:
        self.hub.forget(self)
        if not self.task.done():
            self.task.cancel()

    async def _poll(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while True:
                started = loop.time()
                try:
                    snapshot = await self.hub.read(self.workflow_id)
                except ApiError as err:
                    if self.snapshot is None:
                        # Nothing to watch (unknown run, Temporal down): every waiting subscriber
                        # gets the error as its HTTP status, not a stream.
                        self.first_error = err
                        self.first_read.set()
                        self.hub.forget(self)
                        return
                    self._report_unavailable(err.detail)
                    await self._wait_from(started)
                    continue
                self._publish(snapshot)
                if snapshot.final:
                    # Every subscriber's stream stops at the "end" event just published; whoever
                    # comes later starts a new watch, which reads the run once more.
                    self.hub.forget(self)
                    return
                await self._wait_from(started)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Event poller failed", extra={"workflow_id": self.workflow_id})
            self.hub.forget(self)
            for subscription in list(self.subscribers):
                subscription.disconnect()
            if not self.first_read.is_set():
                self.first_error = ApiError("The run's events could not be read; try again.")
                self.first_read.set()

    async def _wait_from(self, started: float) -> None:
        # One read per interval, start to start: a slow read does not stretch the rate.
        elapsed = asyncio.get_running_loop().time() - started
        await asyncio.sleep(max(0.0, self.hub.interval - elapsed))

    def _publish(self, snapshot: RunSnapshot) -> None:
        previous = self.snapshot
        self.snapshot = snapshot
        self.unavailable = None
        live: list[RunEvent] | None = None
        if previous is not None:
            known = frozenset(entry["name"] for entry in previous.artifacts)
            live = events_between(previous.cursor, known, snapshot)
        for subscription in list(self.subscribers):
            if subscription.waiting_for_first_read:
                subscription.waiting_for_first_read = False
                subscription.deliver(events_between(subscription.seen, None, snapshot))
            elif live:
                subscription.deliver(live)
        self.first_read.set()

    def _report_unavailable(self, detail: str) -> None:
        if detail == self.unavailable:
            return  # said once per outage, not once per interval
        self.unavailable = detail
        event = RunEvent("unavailable", {"detail": detail}, None)
        for subscription in list(self.subscribers):
            subscription.deliver([event])


class EventHub:
    """Shared pollers of one API process, keyed by run."""

    def __init__(
        self, read_state: ReadState, list_artifacts: ListArtifacts, interval: float
    ) -> None:
        self._read_state = read_state
        self._list_artifacts = list_artifacts
        self.interval = interval
        self.watches: dict[str, RunWatch] = {}

    async def read(self, workflow_id: str) -> RunSnapshot:
        state = await self._read_state(workflow_id)
        return RunSnapshot.of(state, await self._list_artifacts(workflow_id))

    async def subscribe(self, workflow_id: str, last_event_id: str | None = None) -> Subscription:
        """Join the run's watch (starting it if needed) once the run has been read.

        Raises the read's ApiError (404 unknown run, 503 Temporal down) instead of streaming.
        """
        watch = self.watches.get(workflow_id)
        if watch is None:
            watch = self.watches[workflow_id] = RunWatch(self, workflow_id)
        subscription = watch.join(Cursor.parse(last_event_id))
        try:
            await watch.first_read.wait()
        except asyncio.CancelledError:
            subscription.close()
            raise
        if watch.first_error is not None:
            subscription.close()
            raise watch.first_error
        return subscription

    def forget(self, watch: RunWatch) -> None:
        if self.watches.get(watch.workflow_id) is watch:
            del self.watches[watch.workflow_id]

    async def close(self) -> None:
        for watch in list(self.watches.values()):
            watch.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await watch.task


# --- The route ----------------------------------------------------------------------------------

router = APIRouter()


def _hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.events
    return hub


def _as_sse(event: RunEvent) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event.data), event=event.kind, id=event.id)


@router.get(
    "/workflow/{workflow_id}/events",
    tags=["runs"],
    response_class=EventSourceResponse,
    responses={
        200: {
            # Each event's data is one JSON object; its fields depend on the event type.
            "content": {"text/event-stream": {"schema": {}}},
            "description": "Events `status`, `message`, `artifacts`, then `end` when the run ends.",
        },
        **error_responses(*GUARDED, 400, 404),
    },
)
async def run_events(
    request: Request,
    workflow_id: str,
    principal: Annotated[Principal, Depends(require_role(Role.VIEWER))],
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> EventSourceResponse:
    """Server-Sent Events for each change of the run: step and status, messages, artifacts.

    The stream closes after the `end` event. Reconnect with the `Last-Event-ID` header (browsers
    do) to receive only what happened since; any replica of the API resumes it the same way.
    """
    # Whether this caller may see the run is checked once, here; the shared poller reads for all.
    runs: RunService = request.app.state.runs
    await runs.ensure_exists(workflow_id, principal)
    subscription = await _hub(request).subscribe(workflow_id, last_event_id)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in subscription:
                yield _as_sse(event)
        finally:
            subscription.close()

    return EventSourceResponse(stream(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"})
