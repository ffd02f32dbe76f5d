"""What a run hands back: plots, a report, a pipeline that scores raw rows, a tuned threshold,
and an account of every request, from generated code run in the real sandbox."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from activities.artifacts import ArtifactStore
from activities.column_plan import profile_for_goal
from activities.llm import prompts
from activities.llm.agents import CodeAnswer, LlmAgents
from activities.offline import (
    plan_research,
    review_training,
    write_eda_code,
    write_training_code,
)
from activities.run_report import write_run_report
from activities.sandbox import SandboxLimits, run_python
from tests.sample_data import make_churn
from workflows.models import (
    AgentContext,
    DatasetInfo,
    ExecutionResult,
    Feedback,
    LlmUsage,
    RequestOutcome,
    Step,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LIMITS = SandboxLimits(wall_seconds=240, memory_mb=2048, cpu_seconds=480)
EDA_PLOTS = {"missing_values.png", "target_balance.png", "distributions.png"}
HEATMAP = "correlation_heatmap.png"


def make_imbalanced(rows: int = 2500, seed: int = 11) -> pd.DataFrame:
    """Card transactions where about 3% are fraud, partly predictable from amount and hour."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.5, 1.0, rows).round(2)
    hour = rng.integers(0, 24, rows)
    channel = rng.choice(["web", "shop", "phone"], rows, p=[0.5, 0.4, 0.1])
    logit = -4.6 + 0.9 * (np.log(amount) - 3.5) + 1.2 * (hour < 5) + 0.8 * (channel == "phone")
    fraud = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "amount": amount,
            "hour": hour,
            "channel": channel,
            "merchant_score": rng.normal(0, 1, rows).round(3),
            "is_fraud": np.where(fraud, "fraud", "ok"),
        }
    )


def make_diabetes() -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame


@dataclass(frozen=True)
class Dataset:
    name: str
    goal: str
    task_type: str


DATASETS = {
    "churn": (make_churn, Dataset("churn", "build a customer churn prediction model", "classification")),
    "diabetes": (make_diabetes, Dataset("diabetes", "predict disease progression", "regression")),
    "fraud": (make_imbalanced, Dataset("fraud", "classify fraudulent transactions", "classification")),
}  # fmt: skip


@pytest.fixture(scope="module")
def csv_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("run-output-data")
    paths = {}
    for name, (make, _) in DATASETS.items():
        paths[name] = folder / f"{name}.csv"
        make().to_csv(paths[name], index=False)
    return paths


def context(path: Path, goal: str, **kwargs: object) -> AgentContext:
    profile = profile_for_goal(path, goal)
    info = DatasetInfo(
        source_url=f"file://{path}",
        file_path=str(path),
        size_bytes=path.stat().st_size,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        profile=profile,
    )
    plan = plan_research(goal, profile)
    return AgentContext(workflow_id="wf-outputs", user_goal=goal, dataset=info, plan=plan, **kwargs)  # type: ignore[arg-type]


def human(text: str) -> Feedback:
    return Feedback(source="human", text=text, step=Step.DATA_ENGINEERING, at=datetime.now(UTC))


async def run_in_sandbox(code: str, dataset: Path, workdir: Path) -> Path:
    run = await run_python(code, dataset, workdir, LIMITS)
    assert run.exit_code == 0, f"{run.message}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return workdir


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path.name} is not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100, (path.name, width, height)


def import_outputs(store: ArtifactStore, step: Step, version: int, folder: Path) -> ExecutionResult:
    refs = store.import_dir("wf-outputs", step.value, version, folder)
    metrics_file = folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
    return ExecutionResult(
        backend="local", exit_code=0, duration_seconds=1.0, metrics=metrics, artifacts=refs
    )


# --- Training: the whole package, on three kinds of data ------------------------------------


@pytest.mark.parametrize("name", list(DATASETS))
async def test_training_hands_back_plots_report_and_a_pipeline_for_raw_rows(
    name: str, csv_paths: dict[str, Path], tmp_path: Path
):
    path = csv_paths[name]
    dataset = DATASETS[name][1]
    ctx = context(path, dataset.goal)
    assert ctx.plan is not None and ctx.plan.task_type == dataset.task_type
    store = ArtifactStore(tmp_path / "artifacts")

    eda = write_eda_code(ctx)
    eda_out = await run_in_sandbox(eda.code, path, tmp_path / "eda")
    for plot in EDA_PLOTS | {HEATMAP}:
        assert_png(eda_out / plot)
    eda_summary = json.loads((eda_out / "eda_summary.json").read_text())
    assert set(eda_summary["plots"]) == EDA_PLOTS | {HEATMAP}
    assert eda_summary["plot_errors"] == {}

    training = write_training_code(ctx)
    out = await run_in_sandbox(training.code, path, tmp_path / "train")
    metrics = json.loads((out / "metrics.json").read_text())
    if dataset.task_type == "classification":
        expected_plots = {"roc_curve.png", "pr_curve.png", "confusion_matrix.png"}
    else:
        expected_plots = {"residuals.png", "predicted_vs_actual.png"}
    for plot in expected_plots | {"feature_importance.png"}:
        assert_png(out / plot)
    assert "plot_errors" not in metrics

    # The pipeline scores the rows of the very CSV it was trained on, blanks and all, in a
    # process that has none of the script's code (cleaning classes travel inside the file).
    raw = pd.read_csv(path)
    model = joblib.load(out / "model.joblib")
    predictions = model.predict(raw)
    assert len(predictions) == len(raw)
    if name == "churn":
        blanks = raw[raw["TotalCharges"].astype(str).str.strip() == ""]
        assert len(blanks) > 0
        assert len(model.predict(blanks)) == len(blanks)
        assert np.allclose(model.predict_proba(blanks).sum(axis=1), 1.0)

    schema = json.loads((out / "input_schema.json").read_text())
    assert [c["name"] for c in schema["columns"]] == list(raw.columns)
    assert set(schema["required"]) == set(ctx.plan.features)
    card = json.loads((out / "model_card.json").read_text())
    assert card["target"] == ctx.plan.target and card["metric"] == metrics["metric"]
    assert card["data_fingerprint"]["sha256"] == ctx.dataset.sha256
    assert {"python", "scikit-learn", "pandas", "numpy"} <= set(card["library_versions"])
    datetime.fromisoformat(card["trained_at"])
    assert ctx.plan.target in (out / "model_card.md").read_text()

    if dataset.task_type == "classification":
        for key in ("threshold", "accuracy", "majority_baseline_accuracy"):
            assert key in metrics, key
        assert 0.0 < metrics["threshold"] < 1.0
        majority = raw[ctx.plan.target].value_counts(normalize=True).max()
        assert abs(metrics["majority_baseline_accuracy"] - majority) < 0.03
        below = metrics["accuracy"] < metrics["majority_baseline_accuracy"]
        assert metrics["accuracy_below_majority"] == (1.0 if below else 0.0)
        if below:  # then the run says so, in its output and to the critic
            assert "BELOW the majority-class baseline" in metrics["accuracy_note"]

    # The report: goal, data, plan, code, metrics against the baseline, plots, the review.
    eda_result = import_outputs(store, Step.BROWSER_AGENT, 1, eda_out)
    training_result = import_outputs(store, Step.ML_WORKER, 1, out)
    after = ctx.model_copy(
        update={
            "eda_result": eda_result,
            "training_code": training,
            "training_result": training_result,
        }
    )
    review = review_training(after)
    if dataset.task_type == "classification" and metrics["accuracy_below_majority"]:
        assert any(f.category == "accuracy" for f in review.findings)
    ref = write_run_report(store, after, review)
    assert ref.name == "critic_agent/v1/report.html"
    page = store.resolve("wf-outputs", ref.name).read_text()
    assert dataset.goal in page and ctx.dataset.sha256 in page
    assert f"{metrics['score']:.4f}" in page and f"{metrics['baseline_score']:.4f}" in page
    assert review.summary.split(";")[0] in page
    assert "def main() -&gt; None:" in page  # the code, escaped
    embedded = page.count("src='data:image/png;base64,")
    assert embedded == len(EDA_PLOTS | {HEATMAP} | expected_plots) + 1
    assert "<script" not in page.lower()


async def test_imbalanced_classifier_is_never_silently_worse_than_the_majority(
    csv_paths: dict[str, Path], tmp_path: Path
):
    path = csv_paths["fraud"]
    ctx = context(path, DATASETS["fraud"][1].goal)
    training = write_training_code(ctx)
    assert "THRESHOLD_METRIC = 'f1'" in training.code  # 3% positives: F1, not accuracy
    out = await run_in_sandbox(training.code, path, tmp_path / "train")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["positive_label"] == "fraud" and metrics["threshold_metric"] == "f1"
    if metrics["accuracy"] < metrics["majority_baseline_accuracy"]:
        assert metrics["accuracy_below_majority"] == 1.0
        assert "BELOW" in metrics["accuracy_note"]
    else:
        assert metrics["accuracy_below_majority"] == 0.0


# --- Requests: done, or said not to be ------------------------------------------------------


async def test_drop_and_heatmap_request_is_done_and_accounted_for(
    csv_paths: dict[str, Path], tmp_path: Path
):
    path = csv_paths["churn"]
    goal = DATASETS["churn"][1].goal
    ctx = context(
        path,
        goal,
        feedback=[human("drop the gender column; also show me a correlation heatmap")],
        version=2,
    )
    eda = write_eda_code(ctx)
    assert [(o.request, o.done) for o in eda.addressed] == [
        ("drop the gender column", True),
        ("show me a correlation heatmap", True),
    ]
    assert "gender" in eda.addressed[0].reason and HEATMAP in eda.addressed[1].reason
    assert "Not done" not in eda.summary
    out = await run_in_sandbox(eda.code, path, tmp_path / "eda")
    assert_png(out / HEATMAP)
    summary = json.loads((out / "eda_summary.json").read_text())
    assert summary["dropped_columns"] == ["gender"] and "gender" not in summary["columns"]


def test_requests_the_offline_agent_cannot_do_are_reported_not_dropped(csv_paths: dict[str, Path]):
    path = csv_paths["churn"]
    goal = DATASETS["churn"][1].goal
    text = "drop the shoe size column. Also draw a violin plot of tenure; and please use xgboost"
    ctx = context(path, goal, feedback=[human(text)], version=2)
    eda = write_eda_code(ctx)
    outcomes = {o.request: o for o in eda.addressed}
    assert set(outcomes) == {
        "drop the shoe size column",
        "draw a violin plot of tenure",
        "please use xgboost",
    }
    assert not any(o.done for o in outcomes.values())
    assert all(o.reason for o in outcomes.values())
    for request in outcomes:
        assert request in eda.summary
    assert eda.summary.count("Not done:") == 1

    # Heatmaps need two numeric columns; with one, the request is not done, and says why.
    frame = pd.DataFrame(
        {"colour": ["red", "blue"] * 30, "size": range(60), "label": ["a", "b", "b"] * 20}
    )
    small = path.parent / "one_numeric.csv"
    frame.to_csv(small, index=False)
    ctx = context(
        small, "predict the label", feedback=[human("show a correlation heatmap")], version=2
    )
    [outcome] = write_eda_code(ctx).addressed
    assert not outcome.done and "fewer than two numeric columns" in outcome.reason


def test_training_reports_what_it_did_with_each_critic_finding(csv_paths: dict[str, Path]):
    path = csv_paths["churn"]
    review = (
        "revise: 2 problem(s)\n"
        "[error] imbalance: the classes are imbalanced; use class_weight='balanced'\n"
        "[error] goal: predict churn within 30 days instead"
    )
    critic = Feedback(source="critic", text=review, step=Step.CRITIC, at=datetime.now(UTC))
    code = write_training_code(
        context(path, DATASETS["churn"][1].goal, feedback=[critic], version=2)
    )
    done = {o.request.split(":")[0]: o.done for o in code.addressed}
    assert done == {"[error] imbalance": True, "[error] goal": False}
    assert "Not done: [error] goal" in code.summary


# --- The LLM brain: the same deliverables, asked for by name --------------------------------


def test_llm_prompts_name_the_plot_package_and_every_output_file():
    for name in ("matplotlib", "eda_summary.json", "correlation_heatmap.png", "missing_values.png",
                 "target_balance.png", "distributions.png", "`addressed`"):  # fmt: skip
        assert name in prompts.DATA_ENGINEERING_SYSTEM, name
    for name in ("matplotlib", "cloudpickle", "metrics.json", "model.joblib", "input_schema.json",
                 "model_card.json", "model_card.md", "roc_curve.png", "pr_curve.png",
                 "confusion_matrix.png", "residuals.png", "predicted_vs_actual.png",
                 "feature_importance.png", "majority_baseline_accuracy", "threshold",
                 "TunedThresholdClassifierCV", "`addressed`", "never drop a request silently"):  # fmt: skip
        assert name in prompts.ML_SYSTEM, name
    assert "no matplotlib" not in prompts.CODE_CONTRACT
    assert {"matplotlib", "cloudpickle"} <= set(prompts.ALLOWED_PACKAGES)
    assert "addressed" in CodeAnswer.model_json_schema()["properties"]


class _ScriptedProvider:
    """Answers every call with one fixed reply, as a model would after validation."""

    def __init__(self, answer: CodeAnswer) -> None:
        self.answer = answer

    async def generate(self, *, system, user, output_model, agent="agent", check=None):  # type: ignore[no-untyped-def]
        if check is not None:
            check(self.answer)
        return self.answer, LlmUsage(provider="scripted", model="m")


async def test_llm_code_carries_its_request_outcomes_into_the_summary(csv_paths: dict[str, Path]):
    path = csv_paths["churn"]
    answer = CodeAnswer(
        code='import os\nDATASET_PATH = os.environ["DATASET_PATH"]\nOUTPUT_DIR = os.environ["OUTPUT_DIR"]\n'
        'open(os.path.join(OUTPUT_DIR, "eda_summary.json"), "w").write("{}")\n',
        summary="Describes the data.",
        addressed=[
            RequestOutcome(request="drop the gender column", done=True),
            RequestOutcome(request="3D plot", done=False, reason="no 3D plotting is installed"),
        ],
    )
    agents = LlmAgents(_ScriptedProvider(answer))  # type: ignore[arg-type]
    ctx = context(
        path,
        DATASETS["churn"][1].goal,
        feedback=[human("drop the gender column; also a 3D plot")],
        version=2,
    )
    outcome = await agents.data_engineering(ctx)
    assert outcome.code.addressed == answer.addressed
    assert "Not done: 3D plot (because no 3D plotting is installed)." in outcome.code.summary
