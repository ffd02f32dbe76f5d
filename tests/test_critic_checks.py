"""The critic sends back what matters, with the reason and a structured finding the ML agent acts
on: a leaky column, a near-perfect score, decisions worse than the majority class, a metric
blind to the class balance, a target the goal does not name, and a request that was not done.
Runs that are sound are accepted.

Each run is the offline brain's own training script, run as the sandbox would, on a dataset
built to trigger (or not) one check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes

from activities.column_plan import profile_for_goal
from activities.offline import plan_research, review_training, write_training_code
from activities.offline.critic_requests import findings_from_text, render_finding
from workflows.models import (
    AgentContext,
    DatasetInfo,
    ExecutionResult,
    Feedback,
    Finding,
    GeneratedCode,
    ResearchPlan,
    Review,
    Step,
)

# The light tuning has a budget; a second keeps these runs quick.
TUNING_SECONDS = "1"


def context(
    path: Path, goal: str, plan: ResearchPlan | None = None, **kwargs: object
) -> AgentContext:
    profile = profile_for_goal(path, goal)
    info = DatasetInfo(
        source_url=str(path),
        file_path=str(path),
        size_bytes=path.stat().st_size,
        sha256="0" * 64,
        profile=profile,
    )
    return AgentContext(
        workflow_id="wf-critic",
        user_goal=goal,
        dataset=info,
        plan=plan or plan_research(goal, profile),
        **kwargs,  # type: ignore[arg-type]
    )


def run(code: str, dataset: Path, tmp_path: Path, label: str) -> ExecutionResult:
    """The script in a fresh process with only DATASET_PATH and OUTPUT_DIR, as the sandbox does."""
    output = tmp_path / f"{label}-out"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATASET_PATH": str(dataset),
        "OUTPUT_DIR": str(output),
        "TRAINING_TUNING_SECONDS": TUNING_SECONDS,
        "OMP_NUM_THREADS": "1",
    }
    script = tmp_path / f"{label}.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ExecutionResult(
        backend="local",
        exit_code=0,
        duration_seconds=1.0,
        stdout_tail=proc.stdout[-4000:],
        metrics=json.loads((output / "metrics.json").read_text()),
    )


def train_and_review(
    ctx: AgentContext, tmp_path: Path, label: str, edit: object = None
) -> tuple[GeneratedCode, ExecutionResult, Review]:
    code = write_training_code(ctx)
    if callable(edit):  # another brain's choice, made by editing the offline script
        code = code.model_copy(update={"code": edit(code.code)})
    result = run(code.code, Path(ctx.dataset.file_path), tmp_path, label)
    review = review_training(
        ctx.model_copy(update={"training_code": code, "training_result": result})
    )
    return code, result, review


def critic_feedback(review: Review) -> Feedback:
    """The review as the workflow hands it on: text for people, findings as data."""
    text = "\n".join([f"{review.verdict}: {review.summary}", *map(render_finding, review.findings)])
    return Feedback(
        source="critic", text=text, step=Step.CRITIC, at=datetime.now(UTC), findings=review.findings
    )


def errors(review: Review, category: str) -> list[Finding]:
    return [f for f in review.findings if f.severity == "error" and f.category == category]


def write(frame: pd.DataFrame, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


# --- Datasets built to trigger one check each ------------------------------------------------


def flats(rows: int = 800, seed: int = 7, leak: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.normal(90, 25, rows).clip(20, None).round(1)
    rooms = rng.integers(1, 7, rows)
    district = rng.choice(["north", "south", "east", "west", "centre"], rows)
    price = (
        size * 2500 + rooms * 8000 + (district == "centre") * 40_000 + rng.normal(0, 30_000, rows)
    )
    frame = pd.DataFrame({"size_m2": size, "rooms": rooms, "district": district})
    if leak:
        # Recorded after the sale: the price plus a little rounding noise, under an innocent name.
        frame["assessed_value"] = (price * 1.02 + rng.normal(0, 500, rows)).round(0)
    frame["price"] = price.round(0)
    return frame


def defaults(rows: int = 2000, seed: int = 8, positive_share: float = 0.011) -> pd.DataFrame:
    """Loans where about 3% default, partly predictable."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.5, rows).round(0)
    debt_ratio = rng.beta(2, 5, rows).round(3)
    late_payments = rng.poisson(0.3, rows)
    purpose = rng.choice(["car", "home", "study", "other"], rows)
    base = np.log(positive_share / (1 - positive_share))
    logit = (
        base
        + 2.0 * (debt_ratio - 0.28) / 0.16 * 0.5
        + 0.9 * late_payments
        - 0.3 * (np.log(income) - 10.5)
    )
    default = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "income": income,
            "debt_ratio": debt_ratio,
            "late_payments": late_payments,
            "purpose": purpose,
            "defaulted": default.astype(int),
        }
    )


def xor_labels(rows: int = 1100, seed: int = 9) -> pd.DataFrame:
    """A label fully decided by two columns together, neither of which decides it alone."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    noise = rng.normal(size=(rows, 3))
    frame = pd.DataFrame({"a": a.round(4), "b": b.round(4)})
    for i in range(3):
        frame[f"noise_{i}"] = noise[:, i].round(4)
    frame["label"] = np.where(a * b > 0, "same", "different")
    return frame


# --- The checks -------------------------------------------------------------------------------


def test_a_column_that_nearly_is_the_target_is_sent_back_and_then_left_out(tmp_path: Path):
    path = write(flats(leak=True), tmp_path, "flats_leaky")
    goal = "predict the sale price of a flat"
    ctx = context(path, goal)
    assert "assessed_value" in ctx.plan.features  # type: ignore[union-attr]  # nothing gives it away by name
    _, result, review = train_and_review(ctx, tmp_path, "leaky")
    assert result.metrics is not None and result.metrics["single_feature_best"] == "assessed_value"
    assert float(result.metrics["single_feature_score"]) > 0.98
    assert review.verdict == "revise"
    [leak] = [f for f in errors(review, "leakage") if "alone" in f.message]
    assert leak.action == "investigate_leakage" and leak.columns == ["assessed_value"]

    # The ML agent reads the finding (not its wording) and leaves the column out.
    revised_ctx = ctx.model_copy(update={"feedback": [critic_feedback(review)], "version": 2})
    revised, result, second = train_and_review(revised_ctx, tmp_path, "leak-fixed")
    assert "'assessed_value'" in revised.code.split("EXCLUDED_COLUMNS = ")[1].split("\n")[0]
    done = [o for o in revised.addressed if "assessed_value" in o.request]
    assert done and all(o.done for o in done)
    assert not errors(second, "leakage"), second
    assert second.verdict == "accept", second


def test_a_near_perfect_score_on_many_test_rows_is_sent_back(tmp_path: Path):
    path = write(xor_labels(), tmp_path, "xor")
    ctx = context(path, "predict the label")
    _, result, review = train_and_review(ctx, tmp_path, "xor")
    assert result.metrics is not None and float(result.metrics["score"]) >= 0.99
    assert float(result.metrics["single_feature_score"]) < 0.9  # no single column explains it
    assert review.verdict == "revise"
    [leak] = errors(review, "leakage")
    assert "near-perfect" in leak.message and leak.action == "investigate_leakage"
    assert leak.columns and leak.columns[0] in {"a", "b"}  # the first suspect to look at


def test_decisions_worse_than_the_majority_class_are_sent_back_and_then_fixed(tmp_path: Path):
    path = write(defaults(), tmp_path, "defaults")
    ctx = context(path, "predict which loans default")
    assert ctx.dataset.profile.target == "defaulted"

    # A brain that tunes its threshold for recall flags nearly everyone.
    def for_recall(code: str) -> str:
        return code.replace("THRESHOLD_METRIC = 'f1'", "THRESHOLD_METRIC = 'recall'")

    _, result, review = train_and_review(ctx, tmp_path, "recall", edit=for_recall)
    assert result.metrics is not None and result.metrics["accuracy_below_majority"] == 1.0
    assert review.verdict == "revise"
    [finding] = errors(review, "accuracy")
    assert finding.action == "use_metric"

    revised_ctx = ctx.model_copy(update={"feedback": [critic_feedback(review)], "version": 2})
    revised, result, second = train_and_review(revised_ctx, tmp_path, "accuracy-fixed")
    assert "THRESHOLD_METRIC = 'accuracy'" in revised.code
    assert not errors(second, "accuracy"), second


def test_accuracy_as_the_metric_on_a_97_to_3_split_is_sent_back(tmp_path: Path):
    path = write(defaults(), tmp_path, "defaults")
    ctx = context(path, "predict which loans default")
    balance = ctx.dataset.profile.class_balance or {}
    assert min(balance.values()) / sum(balance.values()) < 0.05

    def score_by_accuracy(code: str) -> str:
        return code.replace("METRIC = 'roc_auc'", "METRIC = 'accuracy'")

    _, result, review = train_and_review(ctx, tmp_path, "accuracy", edit=score_by_accuracy)
    assert result.metrics is not None and result.metrics["metric"] == "accuracy"
    assert review.verdict == "revise"
    [finding] = errors(review, "metric")
    assert finding.action == "use_metric" and "ROC AUC" in finding.message

    # The offline brain's own choice for the same data passes.
    _, _, own = train_and_review(ctx, tmp_path, "own")
    assert not errors(own, "metric") and own.verdict == "accept", own


def test_a_target_the_goal_does_not_name_is_sent_back_and_then_changed(tmp_path: Path):
    path = write(flats(), tmp_path, "flats")
    goal = "predict the sale price of a flat"
    profile = profile_for_goal(path, goal)
    plan = plan_research(goal, profile)
    wrong = plan.model_copy(
        update={
            "target": "rooms",
            "task_type": "regression",
            "features": ["size_m2", "district", "price"],
        }
    )
    ctx = context(path, goal, plan=wrong)
    _, result, review = train_and_review(ctx, tmp_path, "wrong-target")
    assert result.metrics is not None and result.metrics["target"] == "rooms"
    assert review.verdict == "revise"
    [finding] = errors(review, "goal")
    assert finding.action == "change_target" and finding.columns == ["price"]

    revised_ctx = ctx.model_copy(update={"feedback": [critic_feedback(review)], "version": 2})
    revised, result, second = train_and_review(revised_ctx, tmp_path, "right-target")
    assert "TARGET = 'price'" in revised.code and result.metrics["target"] == "price"  # type: ignore[index]
    assert not errors(second, "goal"), second


def test_a_request_the_brain_could_not_do_is_sent_back(tmp_path: Path):
    path = write(flats(), tmp_path, "flats")
    ctx = context(path, "predict the sale price of a flat")
    ask = Finding(
        severity="error",
        category="features",
        message="Add the price per room as a feature.",
        columns=["rooms"],
        action=None,  # no action the offline brain knows
    )
    earlier = Feedback(
        source="critic",
        text=render_finding(ask),
        step=Step.CRITIC,
        at=datetime.now(UTC),
        findings=[ask],
    )
    code, _, review = train_and_review(
        ctx.model_copy(update={"feedback": [earlier], "version": 2}), tmp_path, "request"
    )
    [outcome] = code.addressed
    assert not outcome.done and outcome.reason
    assert review.verdict == "revise"
    [finding] = errors(review, "feedback")
    assert finding.action == "do_request" and "price per room" in finding.message


def test_sound_runs_are_accepted(tmp_path: Path):
    frame = load_diabetes(as_frame=True).frame
    for name, path, goal in (
        ("diabetes", write(frame, tmp_path, "diabetes"), "predict disease progression"),
        ("flats", write(flats(), tmp_path, "flats"), "predict the sale price of a flat"),
    ):
        _, result, review = train_and_review(context(path, goal), tmp_path, name)
        assert review.verdict == "accept", (name, review)
        assert not [f for f in review.findings if f.severity == "error"]
        assert result.metrics is not None and result.metrics["single_feature_best"]


def test_findings_survive_histories_that_carry_only_text():
    text = (
        "revise: Revise: 2 problem(s)\n"
        "[error] leakage: Column 'proline' looks derived from the target\n"
        "[warning] baseline: The model barely beats the trivial baseline\n"
        "[info] review: nothing else"
    )
    findings = findings_from_text(text)
    assert [(f.category, f.action, f.columns) for f in findings] == [
        ("leakage", "investigate_leakage", ["proline"]),
        ("baseline", "tune", []),
    ]
    # A feedback item from before the field existed deserialises with no findings.
    old = Feedback.model_validate(
        {"source": "critic", "text": text, "step": "critic_agent", "at": "2026-01-01T00:00:00Z"}
    )
    assert old.findings == []
    assert (
        Finding.model_validate({"severity": "info", "category": "x", "message": "y"}).action is None
    )
