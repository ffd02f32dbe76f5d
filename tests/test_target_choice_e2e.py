"""A reviewer chooses the target: both brains re-plan for it, and a real run goes the whole way.

The unit tests show what a chosen target changes in the plan (features, exclusions, class
weighting) for the offline brain and for an LLM that tries to plan for another column. The
end-to-end test drives the real dev server, worker and API: a goal the panel reads as unsure
waits with `needs_target_choice`, approval without a target is refused (409, naming the
candidates), approval with a target re-plans, and the run then completes for that target.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel
from rich.console import Console
from typer.testing import CliRunner, Result

from activities.column_plan import profile_for_goal
from activities.llm.agents import LlmAgents
from activities.offline import plan_research, write_training_code
from api.main import create_app
from orchestrator_client import OrchestratorClient, render
from orchestrator_client.cli import app as cli_app
from settings import Settings
from tests.conftest import ServiceProcesses
from tests.run_standins import FakeRunService, waiting_run
from tests.sample_data import make_churn
from workflows.models import AgentContext, DatasetInfo, LlmUsage, ResearchPlan, RunState

# Both charges columns are money a customer pays: the reading cannot tell which is meant.
UNSURE_GOAL = "How much will a customer pay?"
T = TypeVar("T", bound=BaseModel)


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("target-choice") / "churn.csv"
    make_churn(rows=1500).to_csv(path, index=False)
    return path


def _context(path: Path, **extra: Any) -> AgentContext:
    profile = profile_for_goal(path, UNSURE_GOAL)
    info = DatasetInfo(
        source_url="churn.csv",
        file_path=str(path),
        size_bytes=path.stat().st_size,
        sha256="0" * 64,
        profile=profile,
    )
    return AgentContext(workflow_id="wf-choice", user_goal=UNSURE_GOAL, dataset=info, **extra)


# --- The offline brain ------------------------------------------------------------------------


def test_a_chosen_target_re_plans_features_exclusions_and_class_weighting(churn_csv: Path):
    ctx = _context(churn_csv)
    profile = ctx.dataset.profile
    first = plan_research(UNSURE_GOAL, profile)
    assert first.needs_target_choice and first.task_type == "regression"
    assert {first.target, *first.target_candidates} >= {"MonthlyCharges", "TotalCharges", "Churn"}
    assert not any("imbalance" in step for step in first.steps)

    chosen = plan_research(UNSURE_GOAL, profile, target_choice="Churn", dataset_path=churn_csv)
    assert (chosen.target, chosen.task_type) == ("Churn", "classification")
    assert chosen.chosen_by_reviewer and not chosen.needs_target_choice
    assert chosen.target_confidence == 1.0 and chosen.target_candidates == []
    # Every usable column but the new target is a feature, the old target included.
    assert first.target in chosen.features and "Churn" not in chosen.features
    assert set(chosen.features) == {
        c.name for c in profile.columns if c.name not in ("Churn", "customerID")
    }
    assert chosen.excluded_columns == ["customerID"]
    # The classes were counted for the new target, so its imbalance is seen and weighted.
    assert chosen.class_balance is not None and sum(chosen.class_balance.values()) == 1500
    assert any("class_weight='balanced'" in step for step in chosen.steps)
    assert "the reviewer chose it" in chosen.rationale

    # The training code written after the re-plan weights the classes of the new target.
    after = ctx.model_copy(update={"plan": chosen}).with_planned_target()
    code = write_training_code(after).code
    assert "CLASS_WEIGHT = 'balanced'" in code or 'CLASS_WEIGHT = "balanced"' in code


def test_a_target_the_dataset_lacks_is_refused(churn_csv: Path):
    profile = _context(churn_csv).dataset.profile
    with pytest.raises(ValueError, match="no column named 'Nope'"):
        plan_research(UNSURE_GOAL, profile, target_choice="Nope")


# --- The LLM brain ----------------------------------------------------------------------------


class ScriptedProvider:
    """Answers each research call with the next scripted plan, as the real providers do:
    a plan the check refuses is sent back, and the next one is tried."""

    def __init__(self, plans: list[ResearchPlan]) -> None:
        self.plans = plans
        self.prompts: list[str] = []
        self.refusals: list[str] = []

    async def generate(
        self, *, system: str, user: str, output_model: type[T], agent: str = "agent", check=None
    ) -> tuple[T, LlmUsage]:
        self.prompts.append(user)
        for plan in self.plans:
            try:
                if check is not None:
                    check(plan)
            except ValueError as error:
                self.refusals.append(str(error))
                continue
            return plan, LlmUsage(provider="scripted", model="m")  # type: ignore[return-value]
        plan = self.plans[-1]
        return plan, LlmUsage(provider="scripted", model="m")  # type: ignore[return-value]


def _plan(target: str, task: str, features: list[str], **extra: Any) -> ResearchPlan:
    return ResearchPlan(
        steps=["explore", "model"],
        target=target,
        task_type=task,  # type: ignore[arg-type]
        features=features,
        **extra,
    )


async def test_the_llm_gets_the_reading_and_its_plan_carries_the_doubt(churn_csv: Path):
    ctx = _context(churn_csv)
    # The model claims certainty it does not have: the service's reading decides the doubt.
    provider = ScriptedProvider(
        [_plan("TotalCharges", "regression", ["tenure"], target_confidence=1.0)]
    )
    outcome = await LlmAgents(provider).research(ctx)  # type: ignore[arg-type]
    prompt = provider.prompts[0]
    assert "How the service read the goal" in prompt and "MonthlyCharges" in prompt
    plan = outcome.plan
    assert plan.needs_target_choice and plan.target_confidence < 0.6
    assert (
        "MonthlyCharges" in plan.target_candidates and "TotalCharges" not in plan.target_candidates
    )


async def test_the_llm_may_not_override_the_reviewers_target(churn_csv: Path):
    ctx = _context(churn_csv, target_choice="Churn")
    stubborn = _plan("TotalCharges", "regression", ["tenure", "Churn"])
    provider = ScriptedProvider([stubborn])
    outcome = await LlmAgents(provider).research(ctx)  # type: ignore[arg-type]
    assert "The reviewer chose the target: Churn" in provider.prompts[0]
    # The check sent the plan back, naming the choice; the stubborn answer is then corrected.
    assert any("the reviewer chose the target 'Churn'" in r for r in provider.refusals)
    plan = outcome.plan
    assert (plan.target, plan.task_type) == ("Churn", "classification")
    assert "Churn" not in plan.features
    assert plan.chosen_by_reviewer and not plan.needs_target_choice
    assert plan.class_balance is not None and set(plan.class_balance) == {"Yes", "No"}


# --- The reviewer's desk and the CLI ----------------------------------------------------------


def unsure_run(workflow_id: str) -> RunState:
    """A run waiting for approval whose plan is unsure of its target (Churn, or tenure?)."""
    run = waiting_run(workflow_id)
    assert run.plan is not None
    run.plan = run.plan.model_copy(
        update={
            "target_confidence": 0.4,
            "target_candidates": ["tenure"],
            "needs_target_choice": True,
        }
    )
    return run


async def test_the_desk_asks_for_a_target_and_sends_the_one_chosen(tmp_path: Path):
    app = create_app(Settings(data_dir=tmp_path, temporal_address="127.0.0.1:1"))
    runs = FakeRunService()
    app.state.runs = runs
    run = unsure_run("wf-unsure")
    runs.add(run)
    sure = waiting_run("wf-sure")
    runs.add(sure)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://desk.test"
    ) as client:
        page = (await client.get("/ui/runs/wf-unsure")).text
        assert 'data-testid="target-confidence">40%' in page
        select = page.split('data-testid="target-choice"')[1].split("</select>")[0]
        candidates = select.split('label="All columns"')[0]
        assert '<option value="Churn">' in candidates and '<option value="tenure">' in candidates
        assert '<option value="customerID">' in select  # every column, after the candidates
        assert 'data-testid="target-choice"' not in (await client.get("/ui/runs/wf-sure")).text

        response = await client.post(
            "/ui/runs/wf-unsure/approve",
            data={"version": "2", "target": "tenure"},
            headers={"Origin": "http://desk.test"},
        )
    assert response.status_code == 303
    assert runs.decisions[-1]["target"] == "tenure"


def test_the_cli_shows_the_doubt_and_sends_the_target(churn_csv: Path):
    run = unsure_run("wf-cli")
    shown = Console(width=200, record=True)
    shown.print(render.plan_view(run))
    text = shown.export_text()
    assert re.search(r"Confidence +40%", text) and re.search(r"Candidates +tenure", text)
    assert "Choose a target" in text and "--target COLUMN" in text

    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append({"path": request.url.path, "body": json.loads(request.content or b"null")})
        return httpx.Response(
            200, json={"workflow_id": "wf-cli", "status": "approved", "message": "ok"}
        )

    client = OrchestratorClient("http://api.test", transport=httpx.MockTransport(answer))
    with client:
        client.approve("wf-cli", 1, target="Churn")
        client.reject("wf-cli", "wrong column", target="tenure")
    assert sent == [
        {"path": "/workflow/wf-cli/approve", "body": {"version": 1, "target": "Churn"}},
        {
            "path": "/workflow/wf-cli/reject",
            "body": {"feedback": "wrong column", "target": "tenure"},
        },
    ]


# --- The whole service --------------------------------------------------------------------------


@pytest.fixture
def api(service: ServiceProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=60) as client:
        yield client


def _wait(api: httpx.Client, workflow_id: str, ready: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get(f"/workflow/{workflow_id}/status").json()
        if ready(body):
            return body
        assert body["status"] not in ("failed", "cancelled", "timed_out"), body
        time.sleep(0.3)
    raise AssertionError(f"{workflow_id} never got there; last status: {body}")


@pytest.mark.integration
def test_an_unsure_run_waits_for_the_reviewer_to_choose_then_completes_for_that_target(
    api: httpx.Client, service: ServiceProcesses, churn_csv: Path
):
    started = api.post(
        "/workflow/start", json={"user_goal": UNSURE_GOAL, "dataset_url": str(churn_csv)}
    )
    assert started.status_code == 200, started.text
    workflow_id = started.json()["workflow_id"]
    _wait(api, workflow_id, lambda b: b["status"] == "awaiting_approval")

    plan = api.get(f"/workflow/{workflow_id}").json()["plan"]
    assert plan["needs_target_choice"] and plan["target_confidence"] < 0.6
    offered = [plan["target"], *plan["target_candidates"]]
    assert {"MonthlyCharges", "TotalCharges"} <= set(offered)

    refused = api.post(f"/workflow/{workflow_id}/approve", json={})
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "approve with a `target`" in detail
    assert "MonthlyCharges" in detail and "TotalCharges" in detail

    unknown = api.post(f"/workflow/{workflow_id}/approve", json={"target": "Nope"})
    assert unknown.status_code == 409 and "no column named 'Nope'" in unknown.json()["detail"]

    # The CLI shows the doubt, and refuses (exit 5) what the API refuses.
    def orchestrator(*args: str) -> Result:
        return CliRunner().invoke(cli_app, ["--url", service.base_url, *args])

    shown = orchestrator("show", workflow_id)
    assert shown.exit_code == 0 and "Choose a target" in shown.output
    refused_cli = orchestrator("approve", workflow_id)
    assert refused_cli.exit_code == 5 and "candidates" in refused_cli.output
    wrong_cli = orchestrator("approve", workflow_id, "--target", "Nope")
    assert wrong_cli.exit_code == 5 and "Nope" in wrong_cli.output
    too_long = api.post(f"/workflow/{workflow_id}/approve", json={"target": "x" * 501})
    assert too_long.status_code == 422

    chosen = api.post(f"/workflow/{workflow_id}/approve", json={"target": "Churn", "version": 1})
    assert chosen.status_code == 200, chosen.text
    _wait(
        api,
        workflow_id,
        lambda b: b["status"] == "awaiting_approval" and b["eda_version"] == 2,
    )
    state = api.get(f"/workflow/{workflow_id}").json()
    plan = state["plan"]
    assert (plan["target"], plan["task_type"]) == ("Churn", "classification")
    assert plan["chosen_by_reviewer"] and not plan["needs_target_choice"]
    assert {"MonthlyCharges", "TotalCharges", "tenure"} <= set(plan["features"])
    assert "Churn" not in plan["features"] and "customerID" in plan["excluded_columns"]
    assert state["research_plan"] == plan["steps"]
    assert any("class_weight='balanced'" in step for step in plan["steps"])
    assert "'Churn'" in state["code_context"]["eda_code"]["code"]
    assert state["audit"][-1]["action"] == "retargeted"

    approved = api.post(f"/workflow/{workflow_id}/approve", json={"version": 2})
    assert approved.status_code == 200, approved.text
    done = _wait(api, workflow_id, lambda b: b["status"] == "completed", timeout=600)
    assert done["status"] == "completed"
    final = api.get(f"/workflow/{workflow_id}").json()
    metrics = final["code_context"]["training_result"]["metrics"]
    assert metrics["target"] == "Churn" and metrics["task_type"] == "classification"
    assert "CLASS_WEIGHT = 'balanced'" in final["code_context"]["training_code"]["code"]
