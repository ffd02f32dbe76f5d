"""Live progress: one shared poller per run fans out to all watchers, resumable by event id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from api.events import SUBSCRIBER_QUEUE_LIMIT, EventHub, RunEvent, Subscription
from api.main import create_app
from settings import Settings
from tests.run_standins import T0, FakeRunService, completed_run, parse_sse, waiting_run
from tests.standins import ServerThread
from workflows.models import ArtifactRef, Message, RunStatus, Step

INTERVAL = 0.05


def make_hub(runs: FakeRunService, artifacts: list[ArtifactRef] | None = None) -> EventHub:
    async def list_artifacts(workflow_id: str) -> list[ArtifactRef]:
        return list(artifacts or [])

    return EventHub(runs.state, list_artifacts, INTERVAL)


async def take(subscription: Subscription, count: int, within: float = 5) -> list[RunEvent]:
    events: list[RunEvent] = []

    async def collect() -> None:
        async for event in subscription:
            events.append(event)
            if len(events) == count:
                return

    await asyncio.wait_for(collect(), within)
    assert len(events) == count, f"the stream closed after {events}"
    return events


def say(runs: FakeRunService, workflow_id: str, text: str) -> None:
    run = runs.runs[workflow_id]
    run.messages.append(Message(role="agent", step=run.current_step, content=text, at=T0))


async def test_fifty_watchers_of_a_run_cost_one_read_per_interval():
    runs = FakeRunService()
    runs.add(waiting_run())
    hub = make_hub(runs)
    subscriptions = [await hub.subscribe("wf-desk-1") for _ in range(50)]
    started = time.monotonic()
    await asyncio.sleep(20 * INTERVAL)
    elapsed = time.monotonic() - started
    # One read per interval (plus the first one), not one per watcher per interval.
    assert runs.calls["state"] <= elapsed / INTERVAL + 2
    assert len(hub.watches) == 1
    for subscription in subscriptions:
        first = await take(subscription, 1)
        assert first[0].kind == "status"
        subscription.close()
    await asyncio.sleep(2 * INTERVAL)
    assert hub.watches == {}, "the poller outlived its last watcher"


async def test_every_watcher_gets_each_change_once_in_order():
    runs = FakeRunService()
    runs.add(waiting_run())
    hub = make_hub(runs)
    early, late = await hub.subscribe("wf-desk-1"), None
    assert [event.kind for event in await take(early, 3)] == ["status", "message", "message"]
    late = await hub.subscribe("wf-desk-1")  # joins a running poller: catches up from the run
    assert [event.kind for event in await take(late, 3)] == ["status", "message", "message"]

    runs.runs["wf-desk-1"].status = RunStatus.RUNNING
    runs.runs["wf-desk-1"].current_step = Step.BROWSER_AGENT
    say(runs, "wf-desk-1", "EDA running")
    for subscription in (early, late):
        status, message = await take(subscription, 2)
        assert status.kind == "status" and status.data["current_step"] == "browser_agent"
        assert message.kind == "message" and message.data == {
            "index": 2,
            "role": "agent",
            "step": "browser_agent",
            "content": "EDA running",
            "at": "2026-11-25T10:00:00Z",
        }
        assert message.id is not None and message.id.startswith("3-")
    for subscription in (early, late):
        subscription.close()


async def test_last_event_id_resumes_on_another_replica_without_gaps_or_repeats():
    runs = FakeRunService()
    runs.add(waiting_run())
    replica_a, replica_b = make_hub(runs), make_hub(runs)
    first = await replica_a.subscribe("wf-desk-1")
    seen = await take(first, 3)
    first.close()  # the browser drops the connection here
    for text in ("one", "two"):
        say(runs, "wf-desk-1", text)
    resumed = await replica_b.subscribe("wf-desk-1", last_event_id=seen[-1].id)
    missed = await take(resumed, 2)
    assert [event.data["content"] for event in missed] == ["one", "two"]
    # Both replicas name the same point of the run with the same id.
    fresh = await replica_a.subscribe("wf-desk-1")
    assert [event.id for event in await take(fresh, 5)][-2:] == [event.id for event in missed]
    resumed.close()
    fresh.close()


async def test_new_artifacts_are_announced_with_what_was_added():
    runs = FakeRunService()
    runs.add(waiting_run())
    artifacts = [ArtifactRef(name="data_engineering_agent/v1/code.py", size_bytes=5,
                             content_type="text/x-python")]  # fmt: skip
    hub = make_hub(runs, artifacts)
    subscription = await hub.subscribe("wf-desk-1")
    initial = (await take(subscription, 4))[-1]
    assert initial.kind == "artifacts"
    assert initial.data["added"] == ["data_engineering_agent/v1/code.py"]
    artifacts.append(ArtifactRef(name="browser_agent/v2/eda.png", size_bytes=9,
                                 content_type="image/png"))  # fmt: skip
    (update,) = await take(subscription, 1)
    assert update.kind == "artifacts" and update.data["added"] == ["browser_agent/v2/eda.png"]
    assert len(update.data["artifacts"]) == 2
    subscription.close()


async def test_stream_ends_when_the_run_ends_and_the_poller_stops():
    runs = FakeRunService()
    runs.add(waiting_run())
    hub = make_hub(runs)
    subscription = await hub.subscribe("wf-desk-1")
    await take(subscription, 3)
    runs.add(completed_run("wf-desk-1"))
    events = [event async for event in subscription]  # ends by itself
    assert events[0].kind == "status" and events[0].data["status"] == "completed"
    assert events[-1].kind == "end" and events[-1].data == {"status": "completed"}
    reads = runs.calls["state"]
    await asyncio.sleep(5 * INTERVAL)
    assert runs.calls["state"] == reads and hub.watches == {}
    # A watcher arriving after the end gets the final state and the end, then the stream closes.
    late = [event async for event in await hub.subscribe("wf-desk-1")]
    assert late[-1].kind == "end"


async def test_unknown_run_is_refused_before_any_stream():
    hub = make_hub(FakeRunService())
    with pytest.raises(Exception, match="No run with id 'wf-nope'") as caught:
        await hub.subscribe("wf-nope")
    assert getattr(caught.value, "status_code", None) == 404
    assert hub.watches == {}


async def test_a_watcher_that_never_reads_is_cut_loose_instead_of_buffered():
    runs = FakeRunService()
    runs.add(waiting_run())
    hub = make_hub(runs)
    stalled, reader = await hub.subscribe("wf-desk-1"), await hub.subscribe("wf-desk-1")
    total = SUBSCRIBER_QUEUE_LIMIT + 40
    reading = asyncio.create_task(take(reader, 3 + total, within=20))
    for index in range(total):
        say(runs, "wf-desk-1", f"line {index}")
        if index % 20 == 19:
            await asyncio.sleep(2 * INTERVAL)  # a busy run, read by a client that keeps up
    received = await reading
    assert received[-1].data["content"] == f"line {total - 1}"
    assert stalled.closed and stalled.queue.qsize() == 1  # only the close marker is kept
    assert [event async for event in stalled] == []
    reader.close()


async def test_a_failing_read_is_reported_once_and_watching_continues():
    runs = FakeRunService()
    runs.add(waiting_run())
    hub = make_hub(runs)
    subscription = await hub.subscribe("wf-desk-1")
    await take(subscription, 3)
    original = runs.runs.pop("wf-desk-1")  # reads now fail with 404, as if Temporal lost it
    await asyncio.sleep(5 * INTERVAL)
    runs.add(original)
    say(runs, "wf-desk-1", "back")
    problem, message = await take(subscription, 2)
    assert problem.kind == "unavailable" and problem.id is None
    assert message.kind == "message" and message.data["content"] == "back"
    subscription.close()


# --- Over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[str, FakeRunService]]:
    app = create_app(
        Settings(data_dir=tmp_path, temporal_address="127.0.0.1:1", events_poll_seconds=INTERVAL)
    )
    runs = FakeRunService()
    app.state.runs = runs
    with ServerThread(app) as server:
        yield server.url, runs


def test_events_route_streams_server_sent_events_until_the_run_ends(served):
    base_url, runs = served
    runs.add(waiting_run())
    with (
        httpx.Client(base_url=base_url, timeout=10) as client,
        client.stream("GET", "/workflow/wf-desk-1/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.iter_lines())
        first = next(events)
        assert first.event == "status" and first.data["status"] == "awaiting_approval"
        assert first.data["eda_version"] == 2
        assert [next(events).event for _ in range(2)] == ["message", "message"]
        final = completed_run("wf-desk-1")
        final.updated_at += timedelta(seconds=1)
        runs.add(final)
        rest = list(events)  # the server closes the stream after "end"
    assert [event.event for event in rest] == ["status", "end"]
    assert rest[-1].id == rest[0].id


def test_events_route_resumes_from_last_event_id_header(served):
    base_url, runs = served
    runs.add(waiting_run())
    with httpx.Client(base_url=base_url, timeout=10) as client:
        with client.stream("GET", "/workflow/wf-desk-1/events") as response:
            events = parse_sse(response.iter_lines())
            seen = [next(events) for _ in range(3)]
        say(runs, "wf-desk-1", "while you were away")
        runs.add(
            completed_run("wf-desk-1").model_copy(
                update={"messages": runs.runs["wf-desk-1"].messages}
            )
        )
        with client.stream(
            "GET", "/workflow/wf-desk-1/events", headers={"Last-Event-ID": seen[-1].id or ""}
        ) as response:
            missed = list(parse_sse(response.iter_lines()))
    assert [event.event for event in missed] == ["status", "message", "end"]
    assert missed[1].data["content"] == "while you were away"


def test_events_route_answers_404_for_an_unknown_run(served):
    base_url, _ = served
    response = httpx.get(f"{base_url}/workflow/wf-nope/events", timeout=10)
    assert response.status_code == 404
    assert "wf-nope" in response.json()["detail"]


# --- What it costs Temporal, measured over the real service --------------------------------------


@pytest.mark.integration
def test_fifty_watchers_cost_temporal_what_one_does(dev_server_env, tmp_path):
    from bench.events_fanout import measure_fanout

    poll_seconds, window = 0.5, 3.0
    result = measure_fanout(
        dev_server_env.client.service_client.config.target_host,
        tmp_path,
        poll_seconds=poll_seconds,
        window=window,
    )
    per_second = result["calls_per_second"]
    ceiling = 1 / poll_seconds + 1 / window  # one read per interval, give or take the window edge
    assert all(rate <= ceiling for rate in per_second.values()), per_second
    assert per_second["1"] >= (1 / poll_seconds) / 2, per_second  # it does watch
    assert result["ratio"] <= 1.5, result  # not 50 times: one shared poller per run
