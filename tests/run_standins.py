"""A RunService stand-in holding runs in memory, sample run states, and an SSE reader for tests.

The desk and the events route call RunService only; this stand-in keeps its signatures and its
errors (404 unknown run, 409 wrong state or version), so the pages are tested without Temporal.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from api.errors import RunNotFound, WrongRunState
from api.schemas import RunList, RunSummary
from api.security import Principal
from workflows.models import (
    CodeContext,
    ColumnProfile,
    DatasetInfo,
    DatasetProfile,
    ExecutionResult,
    Feedback,
    Finding,
    GeneratedCode,
    HumanApproval,
    Message,
    RequestOutcome,
    ResearchPlan,
    Review,
    RunState,
    RunStatus,
    RunStatusView,
    Step,
)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

EDA_V1 = """import pandas as pd

df = pd.read_csv(DATASET_PATH)
print(df.describe())
"""

EDA_V2 = """import pandas as pd

df = pd.read_csv(DATASET_PATH)
df = df.drop(columns=["customerID"])
print(df.describe())
"""


def waiting_run(workflow_id: str = "wf-desk-1", goal: str = "Predict churn") -> RunState:
    """A run whose EDA code v2 waits for approval after one rejection."""
    return RunState(
        workflow_id=workflow_id,
        user_goal=goal,
        dataset_url="examples/churn.csv",
        dataset_info=DatasetInfo(
            source_url="examples/churn.csv",
            file_path="/data/datasets/x/dataset.csv",
            size_bytes=1234,
            sha256="ab" * 32,
            profile=DatasetProfile(
                rows=100,
                columns=[
                    ColumnProfile(name="customerID", kind="text", dtype="object", unique=100),
                    ColumnProfile(name="tenure", kind="numeric", dtype="int64", mean=30.5),
                    ColumnProfile(name="Churn", kind="categorical", dtype="object", unique=2),
                ],
                target="Churn",
                task_type="classification",
                class_balance={"No": 70, "Yes": 30},
            ),
        ),
        research_plan=["Profile", "Clean", "Model"],
        plan=ResearchPlan(
            steps=["Profile", "Clean", "Model"],
            target="Churn",
            task_type="classification",
            features=["tenure"],
            excluded_columns=["customerID"],
            rationale="customerID is an identifier.",
        ),
        code_context=CodeContext(
            eda_code=GeneratedCode(
                code=EDA_V2,
                summary="Drops the identifier.",
                version=2,
                addressed=[
                    RequestOutcome(request="drop the customerID column", done=True),
                    RequestOutcome(request="use a GPU", done=False, reason="not available"),
                ],
            )
        ),
        review_feedback=[
            Feedback(
                source="human",
                text="drop the customerID column",
                step=Step.DATA_ENGINEERING,
                at=T0 + timedelta(seconds=5),
            )
        ],
        messages=[
            Message(role="agent", step=Step.RESEARCH, content="Plan ready.", at=T0),
            Message(
                role="human",
                step=Step.HUMAN_APPROVAL,
                content="Rejected EDA code v1: drop the customerID column",
                at=T0 + timedelta(seconds=5),
            ),
        ],
        current_step=Step.HUMAN_APPROVAL,
        status=RunStatus.AWAITING_APPROVAL,
        rejection_count=1,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=6),
    )


def completed_run(workflow_id: str = "wf-desk-2") -> RunState:
    state = waiting_run(workflow_id)
    state.code_context.training_result = ExecutionResult(
        backend="local",
        exit_code=0,
        duration_seconds=3.0,
        metrics={"metric": "f1", "score": 0.81, "baseline_score": 0.42, "model": "forest"},
    )
    state.review = Review(
        verdict="accept",
        summary="Beats the baseline clearly.",
        findings=[Finding(severity="info", category="baseline", message="f1 0.81 vs 0.42")],
    )
    state.human_approval = HumanApproval.APPROVED
    state.status = RunStatus.COMPLETED
    state.current_step = Step.COMPLETE
    state.completed_at = state.updated_at = T0 + timedelta(minutes=2)
    return state


@dataclass
class FakeRunService:
    """RunService's surface for the desk and the events route, over runs kept in memory."""

    runs: dict[str, RunState] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def add(self, state: RunState, owner: str = "anonymous") -> RunState:
        self.runs[state.workflow_id] = state
        self.owners[state.workflow_id] = owner
        return state

    async def ensure_exists(self, workflow_id: str, reader: Principal | None = None) -> None:
        """As RunService: 404 for an unknown run, and for a reader who may not see it."""
        self.calls["ensure_exists"] += 1
        hidden = (
            reader is not None
            and not reader.reads_every_run
            and self.owners.get(workflow_id) != reader.name
        )
        if workflow_id not in self.runs or hidden:
            raise RunNotFound(f"No run with id {workflow_id!r}.")

    async def state(self, workflow_id: str, reader: Principal | None = None) -> RunState:
        self.calls["state"] += 1
        await self.ensure_exists(workflow_id, reader)
        self.calls["ensure_exists"] -= 1  # part of this read, not a call of its own
        # A copy, as a query returns: later changes to the run do not alter what was read.
        return self.runs[workflow_id].model_copy(deep=True)

    async def list_runs(
        self,
        status: RunStatus | None,
        limit: int,
        page_token: str | None,
        principal: Principal,
        owner: str | None = None,
    ) -> RunList:
        self.calls["list_runs"] += 1
        summaries = [
            RunSummary(
                workflow_id=run.workflow_id,
                status=run.status,
                current_step=run.current_step,
                user_goal=run.user_goal,
                started_at=run.created_at,
                closed_at=run.completed_at,
            )
            for run in self.runs.values()
            if status is None or run.status == status
        ][:limit]
        return RunList(workflows=summaries, count=len(summaries), next_page_token=None)

    async def approve(
        self,
        workflow_id: str,
        version: int | None,
        principal: Principal,
        target: str | None = None,
    ) -> RunStatusView:
        return self._decide(workflow_id, "approve", version, None, principal, target)

    async def reject(
        self,
        workflow_id: str,
        feedback: str | None,
        version: int | None,
        principal: Principal,
        target: str | None = None,
    ) -> RunStatusView:
        return self._decide(workflow_id, "reject", version, feedback, principal, target)

    def _decide(
        self,
        workflow_id: str,
        decision: str,
        version: int | None,
        feedback: str | None,
        principal: Principal,
        target: str | None = None,
    ) -> RunStatusView:
        self.calls[decision] += 1
        run = self.runs.get(workflow_id)
        if run is None:
            raise RunNotFound(f"No run with id {workflow_id!r}.")
        waiting = run.code_context.eda_code.version if run.code_context.eda_code else None
        if run.status != RunStatus.AWAITING_APPROVAL:
            raise WrongRunState(f"Run {workflow_id!r} is not awaiting approval.")
        if version is not None and version != waiting:
            raise WrongRunState(
                f"Run {workflow_id!r} is waiting on EDA code v{waiting}, not v{version}; "
                f"review v{waiting} before you {decision} it."
            )
        self.decisions.append(
            {"decision": decision, "version": version, "feedback": feedback, "by": principal.name}
            | ({"target": target} if target is not None else {})
        )
        run.status = RunStatus.RUNNING
        run.current_step = Step.BROWSER_AGENT if decision == "approve" else Step.DATA_ENGINEERING
        return run.status_view()


# --- Reading Server-Sent Events ---------------------------------------------------------------


@dataclass(frozen=True)
class Sse:
    event: str
    data: Any
    id: str | None


def parse_sse(lines: Iterator[str]) -> Iterator[Sse]:
    """Events from a text/event-stream, as a browser's EventSource reads them (no comments)."""
    event, data, event_id = "message", [], None
    for line in lines:
        if line == "":
            if data:
                yield Sse(event, json.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
