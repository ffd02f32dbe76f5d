"""The `orchestrator` command against the real service: a whole run driven by the CLI alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from api.keys import hash_key
from orchestrator_client import Conflict, InvalidRequest, NotFound, OrchestratorClient
from orchestrator_client.cli import Progress, _follow, app
from orchestrator_client.client import EventsUnavailable
from tests.conftest import ServiceProcesses, free_port
from tests.sample_data import make_churn
from workflows.models import RunState, RunStatus, Step

pytestmark = pytest.mark.integration

GOAL = "Build a customer churn prediction model"
FEEDBACK = "drop the customerID column"
ORCHESTRATOR_SCRIPT = Path(sys.executable).parent / "orchestrator"


def cli(service: ServiceProcesses, *args: str) -> Result:
    return CliRunner().invoke(app, ["--url", service.base_url, *args])


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result.stdout


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-datasets") / "churn.csv"
    make_churn(rows=1200).to_csv(path, index=False)
    return path


@dataclass
class CliRun:
    """Everything a person saw while driving one run with the CLI."""

    workflow_id: str
    outputs: dict[str, str] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cli_run(service: ServiceProcesses, churn_csv: Path) -> Iterator[CliRun]:
    """Start with a local CSV (uploaded), watch, show, reject, show, approve, watch to the end."""
    started = json.loads(ok(cli(service, "start", GOAL, str(churn_csv), "--json")))
    assert started["status"] == "started"
    run = CliRun(started["workflow_id"])
    run.outputs["watch-1"] = ok(cli(service, "watch", run.workflow_id, "--timeout", "180"))
    run.outputs["show-1"] = ok(cli(service, "show", run.workflow_id))
    run.json["show-1"] = json.loads(ok(cli(service, "show", run.workflow_id, "--json")))
    run.outputs["reject"] = ok(
        cli(service, "reject", run.workflow_id, "-m", FEEDBACK, "--version", "1")
    )
    run.outputs["watch-2"] = ok(cli(service, "watch", run.workflow_id, "--timeout", "180"))
    run.outputs["show-2"] = ok(cli(service, "show", run.workflow_id))
    run.json["show-2"] = json.loads(ok(cli(service, "show", run.workflow_id, "--json")))
    stale = cli(service, "approve", run.workflow_id, "--version", "1")
    run.outputs["approve-stale"] = stale.output
    run.json["approve-stale-exit"] = {"code": stale.exit_code}
    run.outputs["approve"] = ok(cli(service, "approve", run.workflow_id, "--version", "2"))
    run.outputs["watch-3"] = ok(cli(service, "watch", run.workflow_id, "--timeout", "300"))
    yield run


def test_local_csv_is_uploaded_and_the_run_waits_for_approval(cli_run: CliRun):
    assert cli_run.workflow_id.startswith("wf-")
    assert "awaits your decision" in cli_run.outputs["watch-1"]
    assert "human_approval" in cli_run.outputs["watch-1"]
    shown = cli_run.json["show-1"]
    assert shown["status"] == "awaiting_approval"
    assert shown["eda_code"]["version"] == 1
    assert shown["diff"] is None  # nothing to compare the first version with
    assert shown["plan"]["target"] == "Churn"


def test_show_prints_plan_and_highlighted_code(cli_run: CliRun):
    text = cli_run.outputs["show-1"]
    assert "Research plan" in text and "Churn" in text
    assert "EDA code v1" in text
    assert "DATASET_PATH" in text  # the code itself, not just its summary
    assert "v1 addressed no feedback" in text


def test_after_reject_show_diffs_against_the_previous_version_and_names_the_feedback(
    cli_run: CliRun,
):
    assert "Rejected" in cli_run.outputs["reject"]
    shown = cli_run.json["show-2"]
    assert shown["eda_code"]["version"] == 2
    assert shown["previous_version"] == 1
    diff = shown["diff"]
    assert diff.startswith(
        "--- data_engineering_agent/v1/code.py\n+++ data_engineering_agent/v2/code.py"
    )
    assert any(line.startswith(("+", "-")) for line in diff.splitlines()[2:])
    requests = [outcome["request"] for outcome in shown["eda_code"]["addressed"]]
    assert any("customerID" in request for request in requests), requests
    text = cli_run.outputs["show-2"]
    assert "Changes since v1" in text and "Feedback addressed by v2" in text


def test_approving_a_version_that_is_not_waiting_is_refused_with_the_servers_reason(
    cli_run: CliRun,
):
    assert cli_run.json["approve-stale-exit"]["code"] == 5
    assert "Error:" in cli_run.outputs["approve-stale"]
    assert "v2" in cli_run.outputs["approve-stale"]


def test_watch_follows_the_approved_run_to_completion(cli_run: CliRun, service: ServiceProcesses):
    assert "Approved" in cli_run.outputs["approve"]
    followed = cli_run.outputs["watch-3"]
    assert "completed" in followed
    # The event stream's messages appear as they happen; the history before the watch does not.
    assert "agent: EDA code ran" in followed
    assert "EDA code v1 ready for review" not in followed
    status = json.loads(ok(cli(service, "status", cli_run.workflow_id, "--json")))
    assert status["status"] == "completed"
    listed = json.loads(ok(cli(service, "list", "--status", "completed", "--json")))
    assert cli_run.workflow_id in [run["workflow_id"] for run in listed["workflows"]]


def test_artifacts_and_download(cli_run: CliRun, service: ServiceProcesses, tmp_path: Path):
    listing = json.loads(ok(cli(service, "artifacts", cli_run.workflow_id, "--json")))
    names = [entry["name"] for entry in listing["artifacts"]]
    assert "data_engineering_agent/v1/code.py" in names
    assert "data_engineering_agent/v2/code.py" in names
    metrics_name = next(name for name in names if name.endswith("metrics.json"))
    assert "Artifacts of" in ok(cli(service, "artifacts", cli_run.workflow_id))

    target = tmp_path / "metrics.json"
    ok(cli(service, "download", cli_run.workflow_id, metrics_name, "-o", str(target)))
    served = httpx.get(
        f"{service.base_url}/workflow/{cli_run.workflow_id}/artifacts/{metrics_name}"
    )
    assert target.read_bytes() == served.content
    assert json.loads(target.read_text())  # a real metrics document

    everything = tmp_path / "all"
    ok(cli(service, "download", cli_run.workflow_id, "-o", str(everything)))
    assert sorted(
        str(p.relative_to(everything)) for p in everything.rglob("*") if p.is_file()
    ) == sorted(names)


def test_predict_with_a_csv_and_with_json_rows(
    cli_run: CliRun, service: ServiceProcesses, churn_csv: Path, tmp_path: Path
):
    sample = tmp_path / "to-score.csv"
    frame = pd.read_csv(churn_csv).head(5).drop(columns=["Churn"])
    frame.to_csv(sample, index=False)
    predicted = json.loads(
        ok(cli(service, "predict", cli_run.workflow_id, "--file", str(sample), "--json"))
    )
    assert len(predicted["predictions"]) == 5
    assert set(predicted["predictions"]) <= {"Yes", "No"}

    rows = json.dumps(json.loads(frame.head(2).to_json(orient="records")))
    table = ok(cli(service, "predict", cli_run.workflow_id, "--rows", rows))
    assert "2 prediction(s)" in table and "Probabilities" in table

    bad = cli(service, "predict", cli_run.workflow_id, "--rows", '[{"no_such_column": 1}]')
    assert bad.exit_code == 6, bad.output  # the server's 422, naming what is wrong
    assert "Error:" in bad.output


# --- Errors: the server's message, and an exit code a script can branch on -----------------------


def test_installed_script_reports_an_unknown_run_with_the_servers_message(
    service: ServiceProcesses,
):
    environment = {**os.environ, "ORCHESTRATOR_URL": service.base_url}
    for command in (["status"], ["show"], ["watch"], ["approve"], ["artifacts"]):
        finished = subprocess.run(
            [str(ORCHESTRATOR_SCRIPT), *command, "wf-no-such-run"],
            env=environment, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert finished.returncode == 4, (command, finished.stdout, finished.stderr)
        assert "wf-no-such-run" in finished.stderr, (command, finished.stderr)
        assert "Traceback" not in finished.stderr
        assert "orchestrator list" in finished.stderr  # what to do next


@pytest.fixture(scope="module")
def keyed_api(
    dev_server_env, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    """The API alone with AUTH_MODE=api_key: one viewer key, one approver key."""
    folder = tmp_path_factory.mktemp("keyed")
    keys = folder / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {"name": "vera", "roles": ["viewer"], "key_sha256": hash_key(VIEWER_KEY)},
                {"name": "abe", "roles": ["approver"], "key_sha256": hash_key(APPROVER_KEY)},
            ]
        )
    )
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        folder / "data",
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(keys),
    )
    processes.start_api()
    try:
        yield processes
    finally:
        processes.stop()


VIEWER_KEY = "orc_viewer-key-for-cli-tests-0123456789"
APPROVER_KEY = "orc_approver-key-for-cli-tests-0123456789"


def test_the_key_comes_from_orchestrator_api_key_and_refusals_say_what_to_do(
    keyed_api: ServiceProcesses,
):
    def run(*args: str, key: str | None = None) -> Result:
        env = {"ORCHESTRATOR_URL": keyed_api.base_url, "ORCHESTRATOR_API_KEY": key or ""}
        return CliRunner().invoke(app, list(args), env=env)

    anonymous = run("status", "wf-no-such-run")
    assert anonymous.exit_code == 3
    assert "No API key" in anonymous.output and "ORCHESTRATOR_API_KEY" in anonymous.output

    wrong = run("list", key="orc_not-a-key")
    assert wrong.exit_code == 3 and "not known" in wrong.output

    # Authenticated: the viewer gets past the door and hears that the run does not exist.
    assert run("status", "wf-no-such-run", key=VIEWER_KEY).exit_code == 4
    assert run("list", "--json", key=VIEWER_KEY).exit_code == 0

    # A viewer may not decide; the server's 403 comes through with its reason.
    refused = run("approve", "wf-no-such-run", key=VIEWER_KEY)
    assert refused.exit_code == 3
    assert "approver" in refused.output


def test_unreachable_api_says_where_it_looked_and_exits_9():
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["status", "wf-anything"], env={"ORCHESTRATOR_URL": nowhere})
    assert result.exit_code == 9
    assert nowhere in result.output and "ORCHESTRATOR_URL" in result.output


def test_a_missing_local_file_is_refused_before_calling_the_service(tmp_path: Path):
    result = CliRunner().invoke(
        app, ["--url", "http://127.0.0.1:9", "start", GOAL, str(tmp_path / "missing.csv")]
    )
    assert result.exit_code == 2
    assert "No such file" in result.output


def test_client_raises_typed_errors_carrying_the_servers_detail(
    service: ServiceProcesses, cli_run: CliRun
):
    with OrchestratorClient(service.base_url) as client:
        with pytest.raises(NotFound) as missing:
            client.status("wf-no-such-run")
        assert "wf-no-such-run" in missing.value.detail
        with pytest.raises(InvalidRequest) as invalid:
            client.reject(cli_run.workflow_id, feedback="x" * 5000)
        assert "feedback" in invalid.value.detail
        with pytest.raises(Conflict) as ended:
            client.approve(cli_run.workflow_id)
        assert cli_run.workflow_id in ended.value.detail
        state = client.state(cli_run.workflow_id)
        assert state.status == RunStatus.COMPLETED
        assert state.code_context.eda_code is not None and state.code_context.eda_code.version == 2


# --- Watching without an event stream --------------------------------------------------------


def test_watch_polls_status_when_the_server_has_no_event_stream():
    """An older server: /events is 404 while the run exists, so watch polls /status instead."""
    statuses = iter(["running", "running", "awaiting_approval"])
    calls: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"detail": "Not Found"})
        status = RunStatus(next(statuses, "awaiting_approval"))
        state = RunState(
            workflow_id="wf-polled",
            user_goal=GOAL,
            dataset_url="https://data.example.com/churn.csv",
            status=status,
            current_step=Step.HUMAN_APPROVAL
            if status == RunStatus.AWAITING_APPROVAL
            else Step.RESEARCH,
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
        body = state.model_dump(mode="json")
        if request.url.path.endswith("/status"):
            body = state.status_view().model_dump(mode="json")
        return httpx.Response(200, json=body)

    seen: list[Progress] = []
    client = OrchestratorClient("http://orchestrator.test", transport=httpx.MockTransport(server))
    final = _follow(client, "wf-polled", 0.01, None, seen.append)
    assert final is not None and final.status == RunStatus.AWAITING_APPROVAL
    assert calls.count("/workflow/wf-polled/events") == 1
    assert calls.count("/workflow/wf-polled/status") >= 2
    assert [p.status for p in seen][-1] == RunStatus.AWAITING_APPROVAL


def test_events_404_for_an_unknown_run_is_not_found_not_a_fallback():
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "No run with id 'wf-gone'."})

    client = OrchestratorClient("http://orchestrator.test", transport=httpx.MockTransport(server))
    with pytest.raises(NotFound) as raised:
        list(client.events("wf-gone"))
    assert not isinstance(raised.value, EventsUnavailable)
    assert "wf-gone" in raised.value.detail
