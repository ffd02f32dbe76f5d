"""The `orchestrator` command: start, follow, review and use runs from a terminal.

Finds the API through ORCHESTRATOR_URL (default http://localhost:8000) and its key through
ORCHESTRATOR_API_KEY. Every command takes --json for machine output. On an error it prints the
server's message and exits non-zero: 3 no or wrong credentials, 4 not found, 5 wrong state,
6 invalid input, 7 rate limited, 8 Temporal or the worker down, 9 API unreachable, 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from orchestrator_client import render
from orchestrator_client.client import (
    DEFAULT_URL,
    KEY_VARIABLE,
    URL_VARIABLE,
    EventsUnavailable,
    OrchestratorClient,
    ServerEvent,
)
from orchestrator_client.errors import ApiError, NotFound
from workflows.models import HumanApproval, RunStatus, RunStatusView, Step

P = ParamSpec("P")
R = TypeVar("R")

EDA_STEP = Step.DATA_ENGINEERING.value
_CODE_ARTIFACT = re.compile(rf"^{EDA_STEP}/v(\d+)/code\.py$")
_STOPPED_FOR_A_PERSON = {RunStatus.AWAITING_APPROVAL}
_ENDED_BADLY = {RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}

app = typer.Typer(
    name="orchestrator",
    help="Drive Orchestrator Service runs: start, watch, review, approve, download, predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
RunId = Annotated[str, typer.Argument(help="The run's id, e.g. wf-3f9c2a1b7d4e.")]


@dataclass
class Session:
    url: str
    api_key: str | None
    timeout: float

    def client(self) -> OrchestratorClient:
        return OrchestratorClient(self.url, self.api_key, timeout=self.timeout)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar=URL_VARIABLE, help="Where the Orchestrator API listens.")
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(envvar=KEY_VARIABLE, help="API key or bearer token.", show_default=False),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each API call.")] = 30.0,
) -> None:
    ctx.obj = Session(url, api_key, timeout)


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _emit_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        typer.echo(value.model_dump_json(indent=2))
    else:
        typer.echo(json.dumps(value, indent=2, default=str))


def _fail(message: str, exit_code: int) -> typer.Exit:
    _err().print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(exit_code)


_HINTS = {
    401: f"Set {KEY_VARIABLE} (or --api-key) to a key the service knows.",
    403: "Your key does not hold the role this needs; ask an admin.",
    404: "Check the id with `orchestrator list`.",
}


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turns the client's errors into the server's message on stderr and a distinct exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ApiError as error:
            hint = _HINTS.get(error.status_code or 0)
            raise _fail(error.detail + (f"\n{hint}" if hint else ""), error.exit_code) from error

    return wrapper


@contextmanager
def _client(ctx: typer.Context) -> Iterator[OrchestratorClient]:
    session: Session = ctx.obj
    client = session.client()
    try:
        yield client
    finally:
        client.close()


# --- Starting and listing -----------------------------------------------------------------------


@app.command()
@handles_errors
def start(
    ctx: typer.Context,
    goal: Annotated[str, typer.Argument(help="What you want, e.g. 'Predict customer churn'.")],
    dataset: Annotated[
        str, typer.Argument(help="A local CSV file (uploaded) or an http(s):// URL.")
    ],
    workflow_id: Annotated[
        str | None, typer.Option(help="Your own run id (wf-…); starting twice returns that run.")
    ] = None,
    server_path: Annotated[
        bool,
        typer.Option(
            "--server-path", help="DATASET is a path the worker reads itself; do not upload it."
        ),
    ] = False,
    watch_run: Annotated[
        bool, typer.Option("--watch", help="Then follow it until it needs you or ends.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a run. A local CSV is uploaded first; a URL is passed to the service as is."""
    with _client(ctx) as client:
        if "://" in dataset or server_path:
            started = client.start(goal, dataset_url=dataset, workflow_id=workflow_id)
        else:
            path = Path(dataset)
            if not path.is_file():
                raise _fail(
                    f"No such file: {dataset}. Give a local CSV, an http(s):// URL, or "
                    "--server-path for a path the worker can read.",
                    2,
                )
            upload = client.upload_dataset(path)
            if not as_json:
                _out().print(f"Uploaded {escape(path.name)} as [bold]{upload.dataset_id}[/]")
            started = client.start(goal, dataset_id=upload.dataset_id, workflow_id=workflow_id)
        if as_json:
            _emit_json(started)
        else:
            _out().print(
                f"Started [bold]{started.workflow_id}[/] ({started.status.value}). "
                f"Follow it with `orchestrator watch {started.workflow_id}`."
            )
        if watch_run:
            _watch(client, started.workflow_id, 2.0, None, as_json)


@app.command("list")
@handles_errors
def list_runs(
    ctx: typer.Context,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    page_token: Annotated[str | None, typer.Option(help="From the previous page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Runs, open ones first (newest first), then finished ones."""
    with _client(ctx) as client:
        runs = client.list_runs(status, limit, page_token)
    if as_json:
        _emit_json(runs)
        return
    _out().print(render.runs_table(runs))
    if runs.next_page_token:
        _out().print(f"More: --page-token {runs.next_page_token}")


@app.command()
@handles_errors
def status(ctx: typer.Context, workflow_id: RunId, as_json: JsonOption = False) -> None:
    """A run's status, step and last error."""
    with _client(ctx) as client:
        view = client.status(workflow_id)
    if as_json:
        _emit_json(view)
    else:
        _out().print(render.status_table(view))


# --- Following a run ----------------------------------------------------------------------------


@app.command()
@handles_errors
def watch(
    ctx: typer.Context,
    workflow_id: RunId,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between polls when there is no event stream.")
    ] = 2.0,
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds (exit 1).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a run live until it awaits your approval or ends.

    Exits 0 when it awaits approval or completed, 1 when it failed, was cancelled or timed out.
    """
    with _client(ctx) as client:
        _watch(client, workflow_id, interval, timeout, as_json)


@dataclass(frozen=True)
class Progress:
    """One thing worth telling the watcher: a status or step change, or a message of the run."""

    status: RunStatus | None = None
    step: Step | None = None
    note: str | None = None
    approval: HumanApproval | None = None

    @property
    def needs_no_watching(self) -> bool:
        """The run ended, or waits for a decision nobody has sent yet."""
        if self.status is None:
            return False
        # After approve/reject the status stays awaiting_approval until the run moves on;
        # the decision is what tells that moment apart from a version still waiting.
        waiting = self.status in _STOPPED_FOR_A_PERSON and self.approval in (
            None,
            HumanApproval.PENDING,
        )
        return waiting or self.status.is_final


_NOTE_CHARS = 300


def _watch(
    client: OrchestratorClient,
    workflow_id: str,
    interval: float,
    timeout: float | None,
    as_json: bool,
) -> None:
    out = _out()
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: list[tuple[RunStatus, Step | None]] = []

    def tell(progress: Progress) -> None:
        if as_json:
            typer.echo(json.dumps(dataclasses.asdict(progress)))
            return
        clock = f"[dim]{time.strftime('%H:%M:%S')}[/]"
        if progress.note:
            out.print(f"{clock}   {escape(progress.note)}", soft_wrap=True)
        if progress.status is None or (seen and seen[-1] == (progress.status, progress.step)):
            return
        seen.append((progress.status, progress.step))
        step = f" · {progress.step.value}" if progress.step else ""
        out.print(f"{clock} {workflow_id}: {render.status_text(progress.status).markup}{step}")

    with out.status(f"Watching {workflow_id}…", spinner="dots") if not as_json else _nothing():
        final = _follow(client, workflow_id, interval, deadline, tell)
    if final is None:
        raise _fail(f"{workflow_id} did not get there within {timeout:g} s.", 1)
    if as_json:
        _emit_json(final)
    else:
        _explain_stop(out, final)
    if final.status in _ENDED_BADLY:
        raise typer.Exit(1)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _follow(
    client: OrchestratorClient,
    workflow_id: str,
    interval: float,
    deadline: float | None,
    tell: Callable[[Progress], None],
) -> RunStatusView | None:
    """Server-Sent Events while the server has them; polling /status every `interval` after."""
    state = client.state(workflow_id)  # a clear 404 for an unknown id, before anything else
    view = state.status_view()
    tell(_progress_of(view))
    if _progress_of(view).needs_no_watching:
        return view
    try:
        for event in client.events(workflow_id):
            # The stream starts with the run's whole history; the watcher wants what is new.
            progress = _read_event(event, first_new_message=len(state.messages))
            if progress is not None:
                tell(progress)
                if progress.needs_no_watching:
                    return client.status(workflow_id)
            if deadline is not None and time.monotonic() > deadline:
                return None
    except EventsUnavailable:
        pass  # an older server: polling below does the same job, only coarser
    except ApiError as error:
        if isinstance(error, NotFound):
            raise
        # A dropped stream is not the run's problem; keep following by polling.
    while deadline is None or time.monotonic() < deadline:
        view = client.status(workflow_id)
        tell(_progress_of(view))
        if _progress_of(view).needs_no_watching:
            return view
        time.sleep(interval)
    return None


def _step(value: object) -> Step | None:
    try:
        return Step(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _read_event(event: ServerEvent, first_new_message: int = 0) -> Progress | None:
    """What an event of GET /workflow/{id}/events says; None for what a watcher need not see.

    `status` and `end` carry the status (and step), `message` one of the run's messages,
    `unavailable` why the server cannot read the run right now.
    """
    data = event.data
    if not isinstance(data, dict):
        return None
    if event.event == "message" and isinstance(data.get("content"), str):
        if isinstance(data.get("index"), int) and data["index"] < first_new_message:
            return None
        who = data.get("role", "run")
        return Progress(
            step=_step(data.get("step")), note=f"{who}: {data['content']}"[:_NOTE_CHARS]
        )
    if event.event == "unavailable":
        return Progress(note=f"server: {data.get('detail', 'the run cannot be read right now')}")
    try:
        status = RunStatus(data["status"])
    except (KeyError, ValueError, TypeError):
        return None
    try:
        approval = HumanApproval(data["human_approval"]) if "human_approval" in data else None
    except ValueError:
        approval = None
    return Progress(status, _step(data.get("current_step")), approval=approval)


def _progress_of(view: RunStatusView) -> Progress:
    return Progress(view.status, view.current_step, approval=view.human_approval)


def _explain_stop(out: Console, view: RunStatusView) -> None:
    if view.status == RunStatus.AWAITING_APPROVAL:
        out.print(
            f"{view.workflow_id} awaits your decision. Review it with "
            f"`orchestrator show {view.workflow_id}`, then `approve` or `reject -m …`."
        )
    elif view.status == RunStatus.COMPLETED:
        out.print(f"{view.workflow_id} completed. See `orchestrator artifacts {view.workflow_id}`.")
    else:
        out.print(
            f"[red]{view.workflow_id} {view.status.value}[/]"
            + (f": {escape(view.last_error)}" if view.last_error else "")
        )


# --- Reviewing and deciding ---------------------------------------------------------------------


@app.command()
@handles_errors
def show(
    ctx: typer.Context,
    workflow_id: RunId,
    training: Annotated[
        bool, typer.Option("--training", help="Also show the training code and its review.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The plan, the waiting EDA code, its diff from the previous version, the feedback it met."""
    with _client(ctx) as client:
        state = client.state(workflow_id)
        eda = state.code_context.eda_code
        previous_version, diff = None, None
        if eda is not None:
            previous_version, previous_code = _previous_eda(client, workflow_id, eda.version)
            if previous_code is not None:
                diff = render.unified_diff(
                    previous_code,
                    eda.code,
                    f"{EDA_STEP}/v{previous_version}/code.py",
                    f"{EDA_STEP}/v{eda.version}/code.py",
                )
    if as_json:
        _emit_json(
            {
                "workflow_id": state.workflow_id,
                "status": state.status,
                "current_step": state.current_step,
                "plan": state.plan.model_dump(mode="json") if state.plan else None,
                "research_plan": state.research_plan,
                "eda_code": eda.model_dump(mode="json") if eda else None,
                "previous_version": previous_version,
                "diff": diff,
                "training_code": (
                    state.code_context.training_code.model_dump(mode="json")
                    if training and state.code_context.training_code
                    else None
                ),
                "review": state.review.model_dump(mode="json") if state.review else None,
            }
        )
        return
    out = _out()
    out.print(
        f"[bold]{state.workflow_id}[/] {render.status_text(state.status).markup} · "
        f"{state.current_step.value}\n[bold]Goal:[/] {escape(state.user_goal)}",
        soft_wrap=True,
    )
    out.print(render.plan_view(state))
    if eda is None:
        out.print("No EDA code yet.", style="dim")
    else:
        out.print(render.code_view(eda, "EDA code"))
        out.print(render.addressed_view(eda))
        if diff is not None:
            out.print(render.diff_view(diff, f"Changes since v{previous_version}"))
        elif eda.version > 1:
            out.print(f"(v{eda.version - 1} is not among the artifacts; no diff.)", style="dim")
    training_code = state.code_context.training_code
    if training and training_code is not None:
        out.print(render.code_view(training_code, "Training code"))
    result = state.code_context.training_result
    if result is not None and result.metrics:
        metrics = ", ".join(f"{k}={render._compact(v)}" for k, v in result.metrics.items())
        out.print(f"[bold]Metrics:[/] {escape(metrics)}", soft_wrap=True)
    if state.review is not None:
        out.print(f"[bold]Critic:[/] {state.review.verdict}: {escape(state.review.summary)}")
    if state.last_error:
        out.print(f"[bold red]Last error:[/] {escape(state.last_error)}", soft_wrap=True)


def _previous_eda(
    client: OrchestratorClient, workflow_id: str, version: int
) -> tuple[int | None, str | None]:
    """The newest stored EDA code version before `version`, and its code."""
    if version <= 1:
        return None, None
    versions = [
        int(match.group(1))
        for entry in client.artifacts(workflow_id).artifacts
        if (match := _CODE_ARTIFACT.match(entry.name)) and int(match.group(1)) < version
    ]
    if not versions:
        return None, None
    previous = max(versions)
    code = client.read_artifact(workflow_id, f"{EDA_STEP}/v{previous}/code.py")
    return previous, code.decode("utf-8", errors="replace")


VersionOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="The version you reviewed; refused if another one is waiting (exit 5)."
    ),
]
TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="The column to predict: required when the plan asks you to choose one (see "
        "`show`); another column than the plan's re-plans the run for it.",
    ),
]


@app.command()
@handles_errors
def approve(
    ctx: typer.Context,
    workflow_id: RunId,
    version: VersionOption = None,
    target: TargetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve the waiting EDA code; the run executes it and goes on to training."""
    with _client(ctx) as client:
        answer = client.approve(workflow_id, version, target)
    if as_json:
        _emit_json(answer)
    else:
        _out().print(f"[green]Approved[/] {workflow_id}: {answer.message}")


@app.command()
@handles_errors
def reject(
    ctx: typer.Context,
    workflow_id: RunId,
    message: Annotated[
        str | None, typer.Option("-m", "--message", help="What to change, for the agent.")
    ] = None,
    version: VersionOption = None,
    target: TargetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send the EDA code back to the Data Engineering agent with your feedback."""
    with _client(ctx) as client:
        answer = client.reject(workflow_id, message, version, target)
    if as_json:
        _emit_json(answer)
    else:
        _out().print(f"[yellow]Rejected[/] {workflow_id}: {answer.message}")


@app.command()
@handles_errors
def cancel(ctx: typer.Context, workflow_id: RunId, as_json: JsonOption = False) -> None:
    """Stop a run."""
    with _client(ctx) as client:
        answer = client.cancel(workflow_id)
    if as_json:
        _emit_json(answer)
    else:
        _out().print(f"{workflow_id}: {answer.message}")


# --- Results ------------------------------------------------------------------------------------


@app.command()
@handles_errors
def artifacts(ctx: typer.Context, workflow_id: RunId, as_json: JsonOption = False) -> None:
    """What the run produced: code per version, logs, metrics, the model."""
    with _client(ctx) as client:
        listing = client.artifacts(workflow_id)
    if as_json:
        _emit_json(listing)
    else:
        _out().print(render.artifacts_table(listing))


@app.command()
@handles_errors
def download(
    ctx: typer.Context,
    workflow_id: RunId,
    name: Annotated[
        str | None,
        typer.Argument(help="An artifact name from `artifacts`; omit it to download them all."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File (one artifact) or folder (all); default: here."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Download one artifact, or all of them into a folder named after the run."""
    with _client(ctx) as client:
        if name is not None:
            targets = {name: output or Path(Path(name).name)}
        else:
            folder = output or Path(workflow_id)
            targets = {
                entry.name: folder / entry.name for entry in client.artifacts(workflow_id).artifacts
            }
            if not targets:
                raise _fail(f"{workflow_id} has no artifacts yet.", 4)
        written = {
            item: str(client.download(workflow_id, item, path)) for item, path in targets.items()
        }
    if as_json:
        _emit_json(written)
        return
    for item, path in written.items():
        _out().print(f"{escape(item)} → {escape(path)}")


@app.command()
@handles_errors
def predict(
    ctx: typer.Context,
    workflow_id: RunId,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", exists=True, dir_okay=False, help="A CSV of rows to score."),
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option(help="JSON rows, e.g. '[{\"tenure\": 3}]', or @rows.json to read a file."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Predictions of the run's trained model for a CSV file or JSON rows."""
    if (file is None) == (rows is None):
        raise _fail("Give either --file CSV or --rows JSON.", 2)
    with _client(ctx) as client:
        if file is not None:
            result = client.predict(workflow_id, csv_path=file)
        else:
            result = client.predict(workflow_id, rows=_parse_rows(rows or ""))
    if as_json:
        _emit_json(result)
    else:
        _out().print(render.prediction_table(result))


def _parse_rows(text: str) -> list[dict[str, Any]]:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except ValueError as error:
        raise _fail(f"--rows is not JSON: {error}", 2) from error
    if isinstance(value, dict):
        value = value.get("rows", [value])
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise _fail('--rows must be a JSON list of objects, e.g. [{"tenure": 3}].', 2)
    return value


@app.command()
@handles_errors
def health(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Whether the API can reach Temporal (exit 8 when it cannot)."""
    with _client(ctx) as client:
        report = client.health()
    if as_json:
        _emit_json(report)
    else:
        _out().print(
            f"{report.status}: Temporal {report.temporal} "
            f"(namespace {report.namespace}, task queue {report.task_queue})"
            + (f" — {report.detail}" if report.detail else "")
        )
    if report.status != "healthy":
        raise typer.Exit(8)


if __name__ == "__main__":
    app()
