"""How the `orchestrator` command shows runs to people: rich tables, highlighted code, colored diffs."""

from __future__ import annotations

import difflib
import json
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from api.schemas import ArtifactList, RunList
from orchestrator_client.client import Prediction
from workflows.models import GeneratedCode, RunState, RunStatus, RunStatusView

STATUS_STYLES = {
    RunStatus.STARTED: "cyan",
    RunStatus.RUNNING: "cyan",
    RunStatus.AWAITING_APPROVAL: "bold yellow",
    RunStatus.COMPLETED: "bold green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.TIMED_OUT: "red",
}


def status_text(status: RunStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _clip(text: str | None, limit: int) -> str:
    if not text:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def runs_table(runs: RunList) -> Table:
    table = Table(title=f"{runs.count} run(s)", title_justify="left")
    for column in ("Run", "Status", "Step", "Goal", "Started", "Closed"):
        table.add_column(column, overflow="fold" if column == "Run" else "ellipsis")
    for run in runs.workflows:
        table.add_row(
            run.workflow_id,
            status_text(run.status),
            run.current_step.value if run.current_step else "-",
            Text(_clip(run.user_goal, 50)),
            _when(run.started_at),
            _when(run.closed_at),
        )
    return table


def status_table(view: RunStatusView) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("Run", view.workflow_id),
        ("Status", status_text(view.status)),
        ("Step", view.current_step.value),
        ("Goal", Text(view.user_goal)),
        ("Plan steps", str(view.research_plan_steps)),
        ("Approval", view.human_approval.value),
        ("Rejections", str(view.rejection_count)),
        ("Feedback", str(view.feedback_count)),
        ("Created", _when(view.created_at)),
        ("Updated", _when(view.updated_at)),
    ]
    if view.last_error:
        rows.append(("Last error", Text(view.last_error, style="red")))
    for label, value in rows:
        table.add_row(label, value)
    return table


def plan_view(state: RunState) -> RenderableType:
    parts: list[RenderableType] = []
    if state.plan is not None:
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        plan = state.plan
        facts.add_row("Target", Text(f"{plan.target} ({plan.task_type})"))
        sureness = "chosen by the reviewer" if plan.chosen_by_reviewer else "from the goal"
        facts.add_row("Confidence", Text(f"{plan.target_confidence:.0%} ({sureness})"))
        if plan.target_candidates:
            facts.add_row("Candidates", Text(", ".join(plan.target_candidates)))
        if plan.needs_target_choice:
            facts.add_row(
                "Choose a target",
                Text(
                    "the plan is unsure which column to predict: approve with "
                    f"`orchestrator approve {state.workflow_id} --target COLUMN` "
                    f"(candidates: {', '.join([plan.target, *plan.target_candidates])})",
                    style="bold yellow",
                ),
            )
        facts.add_row("Features", Text(", ".join(state.plan.features) or "all other columns"))
        facts.add_row("Excluded", Text(", ".join(state.plan.excluded_columns) or "-"))
        if state.plan.rationale:
            facts.add_row("Why", Text(state.plan.rationale))
        parts.append(facts)
    steps = state.plan.steps if state.plan is not None else state.research_plan
    if steps:
        parts.append(Text("\n".join(f"{n}. {step}" for n, step in enumerate(steps, 1))))
    if not parts:
        parts.append(Text("No plan yet.", style="dim"))
    return Panel(Group(*parts), title="Research plan", title_align="left")


def code_view(code: GeneratedCode, title: str) -> RenderableType:
    body: list[RenderableType] = []
    if code.summary:
        body.append(Text(code.summary, style="italic"))
    body.append(Syntax(code.code, "python", line_numbers=True, word_wrap=True))
    return Panel(Group(*body), title=f"{title} v{code.version}", title_align="left")


def addressed_view(code: GeneratedCode) -> RenderableType:
    if not code.addressed:
        return Text(f"v{code.version} addressed no feedback (none was given).", style="dim")
    table = Table(title=f"Feedback addressed by v{code.version}", title_justify="left")
    table.add_column("Request")
    table.add_column("Done")
    table.add_column("Why not")
    for outcome in code.addressed:
        done = Text("yes", style="green") if outcome.done else Text("no", style="red")
        table.add_row(Text(outcome.request), done, Text(outcome.reason))
    return table


def unified_diff(old: str, new: str, old_label: str, new_label: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), old_label, new_label
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def diff_view(diff: str, title: str) -> RenderableType:
    if not diff:
        return Text(f"{title}: no changes.", style="dim")
    text = Text()
    for line in diff.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = ""
        text.append(line, style=style)
    return Panel(text, title=title, title_align="left")


def artifacts_table(listing: ArtifactList) -> Table:
    table = Table(title=f"Artifacts of {listing.workflow_id}", title_justify="left")
    table.add_column("Name", overflow="fold")
    table.add_column("Size", justify="right")
    table.add_column("Type")
    for entry in listing.artifacts:
        table.add_row(Text(entry.name), _size(entry.size_bytes), entry.content_type)
    return table


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def prediction_table(result: Prediction) -> Table:
    table = Table(title=f"{len(result.predictions)} prediction(s)", title_justify="left")
    table.add_column("Row", justify="right")
    table.add_column("Prediction")
    probabilities = result.probabilities or []
    by_row = bool(probabilities) and len(probabilities) == len(result.predictions)
    if by_row:
        table.add_column("Probabilities")
    for index, prediction in enumerate(result.predictions):
        cells = [Text(str(index)), Text(_compact(prediction))]
        if by_row:
            cells.append(Text(_compact(probabilities[index])))
        table.add_row(*cells)
    return table


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_compact(v) for v in value)
    return json.dumps(value)
