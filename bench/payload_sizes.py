"""What each workflow task carries: one run's history, step by step, with its payload sizes.

Runs one service run (no-op agents and executors) and one bare run on a dev server, then reads
both histories: per step, the commands the workflow issued (activities, search-attribute and
memo upserts, timers) and the bytes of every activity input and result, update argument and
answer, memo and search attributes; then the sizes of the queries' answers. Compare its output
before and after a change to what the workflow keeps or sends.

    python -m bench.payload_sizes          # also part of `make bench`
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass, field

from google.protobuf.message import Message
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from bench.engine_floor import BareDriver, ClientDriver, Driver, one_run
from bench.stack import new_stack
from workflows.contract import QUERY_STATE, QUERY_STATUS
from workflows.models import RunState, RunStatusView

# Events the worker's commands produce, and the workflow task events between them.
_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


@dataclass
class Step:
    name: str
    commands: list[str] = field(default_factory=list)
    payload_bytes: dict[str, int] = field(default_factory=dict)
    events: int = 0
    event_bytes: int = 0

    def add(self, what: str, size: int) -> None:
        self.payload_bytes[what] = self.payload_bytes.get(what, 0) + size


def _size(message: Message) -> int:
    return message.ByteSize()


def _describe(event: HistoryEvent, activities: dict[int, str]) -> tuple[str | None, str, int]:
    """(command or None, what the payload is, its bytes) for one history event."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
    if event.HasField("activity_task_scheduled_event_attributes"):
        attributes = event.activity_task_scheduled_event_attributes
        activities[event.event_id] = attributes.activity_type.name
        name = attributes.activity_type.name
        return f"schedule {name}", f"{name} input", _size(attributes.input)
    if event.HasField("activity_task_completed_event_attributes"):
        completed = event.activity_task_completed_event_attributes
        name = activities.get(completed.scheduled_event_id, "?")
        return None, f"{name} result", _size(completed.result)
    if event.HasField("workflow_execution_started_event_attributes"):
        started = event.workflow_execution_started_event_attributes
        size = _size(started.input) + _size(started.memo) + _size(started.search_attributes)
        return None, "start (input, memo, search attributes)", size
    if event.HasField("upsert_workflow_search_attributes_event_attributes"):
        upserted = event.upsert_workflow_search_attributes_event_attributes
        return "upsert search attributes", "search attributes", _size(upserted)
    if event.HasField("workflow_properties_modified_event_attributes"):
        memo = event.workflow_properties_modified_event_attributes.upserted_memo
        return "upsert memo", "memo", _size(memo)
    if event.HasField("workflow_execution_update_accepted_event_attributes"):
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        return None, "update argument", _size(request.input.args)
    if event.HasField("workflow_execution_update_completed_event_attributes"):
        outcome = event.workflow_execution_update_completed_event_attributes.outcome
        return "complete update", "update answer", _size(outcome)
    if event.HasField("timer_started_event_attributes"):
        return "start timer", "timer", 0
    if event.HasField("timer_canceled_event_attributes"):
        return "cancel timer", "timer", 0
    if event.HasField("marker_recorded_event_attributes"):
        return "record marker", "marker (patch)", _size(event.marker_recorded_event_attributes)
    if event.HasField("workflow_execution_completed_event_attributes"):
        result = event.workflow_execution_completed_event_attributes.result
        return "complete workflow", "workflow result", _size(result)
    return None, kind, 0


async def history_by_step(client: Client, run_id: str) -> list[Step]:
    """The run's history cut where each activity is scheduled: that activity is the step."""
    steps = [Step("start")]
    activities: dict[int, str] = {}
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        command, what, size = _describe(event, activities)
        if event.HasField("activity_task_scheduled_event_attributes"):
            steps.append(Step(activities[event.event_id]))
        elif event.HasField("workflow_execution_update_accepted_event_attributes"):
            steps.append(Step("approve (update)"))
        step = steps[-1]
        step.events += 1
        step.event_bytes += event.ByteSize()
        if command:
            step.commands.append(command)
        if size and event.event_type not in _TASK_EVENTS:
            step.add(what, size)
    return steps


async def query_sizes(client: Client, run_id: str) -> dict[str, int]:
    handle = client.get_workflow_handle(run_id)
    converter = client.data_converter
    state = await handle.query(QUERY_STATE, result_type=RunState)
    status = await handle.query(QUERY_STATUS, result_type=RunStatusView)
    memo = (await handle.describe()).raw_description.workflow_execution_info.memo
    return {
        "state query answer": sum(p.ByteSize() for p in await converter.encode([state])),
        "status query answer": sum(p.ByteSize() for p in await converter.encode([status])),
        "memo (read by GET /status)": memo.ByteSize(),
    }


async def one_history(client: Client, driver: Driver) -> tuple[str, list[Step]]:
    run_id = f"wf-sizes-{uuid.uuid4().hex[:8]}"
    await one_run(driver, 0.05, run_id)
    return run_id, await history_by_step(client, run_id)


def summary(steps: list[Step]) -> dict[str, object]:
    return {
        "events": sum(s.events for s in steps),
        "history_bytes": sum(s.event_bytes for s in steps),
        "payload_bytes": sum(sum(s.payload_bytes.values()) for s in steps),
        "commands": sum(len(s.commands) for s in steps),
        "steps": [
            {"step": s.name, "commands": s.commands, "payload_bytes": s.payload_bytes,
             "events": s.events, "event_bytes": s.event_bytes}
            for s in steps
        ],
    }  # fmt: skip


async def measure() -> dict[str, object]:
    stack, folder = new_stack()
    with folder:
        async with stack:
            await stack.start(api=False)
            assert stack.client is not None
            client = stack.client
            service_id, service = await one_history(client, ClientDriver(client, stack.task_queue))
            _, bare = await one_history(client, BareDriver(client, stack.bare_task_queue))
            return {
                "service_run": summary(service),
                "bare_run": summary(bare),
                "service_reads": await query_sizes(client, service_id),
            }


def print_table(results: dict[str, object]) -> None:
    for run in ("service_run", "bare_run"):
        data = results[run]
        assert isinstance(data, dict)
        totals = (
            f"{data['events']} events, {data['history_bytes']} history bytes, "
            f"{data['payload_bytes']} payload bytes, {data['commands']} commands"
        )
        print(f"\n{run}: {totals}", file=sys.stderr)
        for step in data["steps"]:
            sizes = ", ".join(f"{k} {v} B" for k, v in step["payload_bytes"].items())
            commands = "; ".join(step["commands"]) or "-"
            print(f"  {step['step']:<24} {commands:<70} {sizes}", file=sys.stderr)
    print(f"\nreads: {results['service_reads']}", file=sys.stderr)


def run_benchmark() -> dict[str, object]:
    """The sizes, with the per-step table on stderr for a person to read."""
    results = asyncio.run(measure())
    print_table(results)
    return results


def main() -> None:
    results = run_benchmark()
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
