"""The offline data scientist on real data: profile, plan, code that runs, and its critique."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

from activities.column_plan import profile_for_goal
from activities.offline import (
    plan_research,
    review_training,
    write_eda_code,
    write_training_code,
)
from activities.offline.target import infer_target
from tests.sample_data import make_churn
from workflows.models import (
    AgentContext,
    ColumnProfile,
    DatasetInfo,
    DatasetProfile,
    ExecutionResult,
    Feedback,
    GeneratedCode,
    Step,
)

SCRIPT_TIMEOUT = 120


# --- Datasets -----------------------------------------------------------------------------------


def make_listings(rows: int = 800, seed: int = 3) -> pd.DataFrame:
    """Flat prices with the usual mess: ids, dates, free text, empty, constant and leaky columns."""
    rng = np.random.default_rng(seed)
    district = rng.integers(0, 40, rows)
    size = rng.normal(100, 30, rows).clip(20, None).round(1)
    rooms = rng.integers(1, 7, rows)
    price = size * 2000 + rooms * 10_000 + (district % 10) * 5000 + rng.normal(0, 20_000, rows)
    frame = pd.DataFrame(
        {
            "listing_id": np.arange(10_000, 10_000 + rows),
            "listed_on": pd.date_range("2021-01-01", periods=rows, freq="h").strftime(
                "%Y-%m-%d %H:%M"
            ),
            "description": [f"Flat {i} with {r} rooms near the park" for i, r in enumerate(rooms)],
            "district": [f"district_{d}" for d in district],  # 40 levels: more than one-hot keeps
            "size_m2": size,
            "rooms": rooms,
            "has_garden": rng.choice([True, False], rows),
            "always_empty": np.nan,
            "constant": "x",
            "price": price.round(0),
            "price_per_m2": (price / size).round(2),  # computed from the answer
        }
    )
    frame.loc[rng.random(rows) < 0.03, "price"] = np.nan
    frame.loc[rng.random(rows) < 0.1, "size_m2"] = np.nan
    frame.loc[[3, 7], "size_m2"] = np.inf
    return frame


def _breast_cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target")
    # The label first, as text: neither its position nor its name gives it away.
    frame.insert(0, "diagnosis", np.where(data.target == 0, "malignant", "benign"))
    return frame


def _wine() -> pd.DataFrame:
    data = load_wine(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.insert(5, "cultivar", data.target)
    return frame


def _iris() -> pd.DataFrame:
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["species"] = np.asarray(data.target_names)[data.target]
    return frame


def _diabetes() -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], pd.DataFrame]
    goal: str
    target: str
    task_type: str
    id_columns: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()


CASES = [
    Case(
        "breast_cancer",
        _breast_cancer,
        "classify tumours as malignant or benign",
        "diagnosis",
        "classification",
    ),
    Case(
        "wine", _wine, "predict the wine cultivar from its chemistry", "cultivar", "classification"
    ),
    Case(
        "diabetes",
        _diabetes,
        "predict disease progression one year after baseline",
        "target",
        "regression",
    ),
    Case("iris", _iris, "classify iris flowers by species", "species", "classification"),
    Case(
        "churn",
        make_churn,
        "build a customer churn prediction model",
        "Churn",
        "classification",
        ("customerID",),
    ),
    Case(
        "listings",
        make_listings,
        "predict the asking price of a flat",
        "price",
        "regression",
        ("listing_id",),
        ("listed_on", "description", "always_empty", "constant", "price_per_m2"),
    ),
]


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("datasets")
    paths = {}
    for case in CASES:
        paths[case.name] = folder / f"{case.name}.csv"
        case.make().to_csv(paths[case.name], index=False)
    return paths


# --- Helpers ------------------------------------------------------------------------------------


def context(path: Path, goal: str, profile: DatasetProfile, **kwargs: object) -> AgentContext:
    info = DatasetInfo(
        source_url=f"file://{path}",
        file_path=str(path),
        size_bytes=path.stat().st_size,
        sha256="0" * 64,
        profile=profile,
    )
    return AgentContext(workflow_id="wf-test", user_goal=goal, dataset=info, **kwargs)  # type: ignore[arg-type]


def feedback(source: str, text: str) -> Feedback:
    step = Step.DATA_ENGINEERING if source == "human" else Step.CRITIC
    return Feedback(source=source, text=text, step=step, at=datetime.now(UTC))  # type: ignore[arg-type]


def constant(code: str, name: str) -> object:
    """A module-level constant of a generated script, read without running it."""
    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in the generated code")


@dataclass
class Run:
    result: ExecutionResult
    stdout: str
    output: Path


def run_script(code: str, dataset: Path, tmp_path: Path, label: str) -> Run:
    """Run generated code as the sandbox will: fresh process, a folder with only the dataset."""
    workdir = tmp_path / f"{label}-work"
    output = tmp_path / f"{label}-out"
    workdir.mkdir()
    shutil.copy(dataset, workdir / "dataset.csv")
    (workdir / "script.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(DATASET_PATH="dataset.csv", OUTPUT_DIR=str(output), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "script.py"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    metrics_file = output / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
    result = ExecutionResult(
        backend="local",
        exit_code=proc.returncode,
        duration_seconds=0.0,
        stdout_tail=proc.stdout[-4000:],
        stderr_tail=proc.stderr[-4000:],
        metrics=metrics,
    )
    assert proc.returncode == 0, f"{label} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    # The script wrote nothing next to the dataset: every output went to OUTPUT_DIR.
    assert sorted(p.name for p in workdir.iterdir()) == ["dataset.csv", "script.py"]
    return Run(result, proc.stdout, output)


# --- The whole team on each dataset ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_profile_plan_code_and_review(case: Case, csv_files: dict[str, Path], tmp_path: Path):
    path = csv_files[case.name]
    frame = pd.read_csv(path)

    profile = profile_for_goal(path, case.goal)
    json.dumps(profile.model_dump(), allow_nan=False)  # JSON-safe: no NaN or infinity
    assert profile.rows == len(frame) and not profile.sampled
    assert [c.name for c in profile.columns] == list(frame.columns)
    assert profile.target == case.target
    assert profile.task_type == case.task_type
    assert set(profile.id_columns) == set(case.id_columns)
    for column in profile.columns:
        assert column.missing == int(
            frame[column.name].replace(r"^\s*$", np.nan, regex=True).isna().sum()
        )
    if case.task_type == "classification":
        counts = frame[case.target].astype(str).value_counts()
        assert profile.class_balance == {str(k): int(v) for k, v in counts.items()}
    else:
        assert profile.class_balance is None

    plan = plan_research(case.goal, profile)
    assert plan.target == case.target and plan.task_type == case.task_type
    assert any(case.target in step for step in plan.steps)
    assert case.target not in plan.features
    assert set(case.id_columns) | set(case.excluded) <= set(plan.excluded_columns)
    assert not set(case.excluded) & set(plan.features)
    assert not set(case.id_columns) & set(plan.features)
    has_missing = any(profile.column(f).missing for f in plan.features)  # type: ignore[union-attr]
    assert has_missing == any("missing" in step.lower() for step in plan.steps)
    has_categories = any(profile.column(f).kind == "categorical" for f in plan.features)  # type: ignore[union-attr]
    assert has_categories == any("one-hot" in step.lower() for step in plan.steps)

    ctx = context(path, case.goal, profile, plan=plan)
    eda = write_eda_code(ctx)
    eda_run = run_script(eda.code, path, tmp_path, "eda")
    summary = json.loads((eda_run.output / "eda_summary.json").read_text())
    assert summary["rows"] == len(frame) and summary["target"] == case.target
    assert summary["columns"] == list(frame.columns)
    for section in ("Shape", "Column types", "Missing values", "Target", "Association"):
        assert f"=== {section}" in eda_run.stdout

    training = write_training_code(ctx)
    assert set(constant(training.code, "NUMERIC_FEATURES")) | set(
        constant(training.code, "CATEGORICAL_FEATURES")
    ) == set(plan.features)
    train_run = run_script(training.code, path, tmp_path, "train")
    metrics = train_run.result.metrics
    assert metrics is not None
    for key in (
        "task_type",
        "target",
        "metric",
        "score",
        "baseline_score",
        "cv_mean",
        "cv_std",
        "n_train",
        "n_test",
        "beats_baseline",
    ):
        assert key in metrics
    assert metrics["target"] == case.target and metrics["task_type"] == case.task_type
    assert metrics["n_train"] + metrics["n_test"] == frame[case.target].notna().sum()
    assert float(metrics["score"]) > float(metrics["baseline_score"])
    assert metrics["beats_baseline"] == 1.0

    # The saved pipeline loads in another process and predicts from the raw feature columns.
    model = joblib.load(train_run.output / "model.joblib")
    numeric = constant(training.code, "NUMERIC_FEATURES")
    categorical = constant(training.code, "CATEGORICAL_FEATURES")
    rows = frame.head(20)
    X = pd.DataFrame({c: pd.to_numeric(rows[c], errors="coerce") for c in numeric})
    X = X.replace([np.inf, -np.inf], np.nan)
    for c in categorical:
        X[c] = rows[c].astype(str).where(rows[c].notna(), np.nan)
    assert len(model.predict(X[numeric + categorical])) == 20

    ctx_after = context(
        path,
        case.goal,
        profile,
        plan=plan,
        training_code=training,
        training_result=train_run.result,
    )
    review = review_training(ctx_after)
    assert review.verdict == "accept", review
    assert not [f for f in review.findings if f.severity == "error"]


# --- Profiling edge cases -------------------------------------------------------------------


def test_profile_describes_the_whole_file_not_its_head(csv_files: dict[str, Path]):
    profile = profile_for_goal(csv_files["churn"], "predict churn")
    assert not profile.sampled
    assert profile.rows == 2000
    assert sum((profile.class_balance or {}).values()) == 2000  # every row, counted


def test_profile_handles_latin1_and_semicolons(tmp_path: Path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "ville": rng.choice(["Orléans", "Besançon", "Nîmes"], 60),
            "surface": rng.normal(80, 20, 60).round(1),
            "prix": rng.normal(250_000, 50_000, 60).round(0),
        }
    )
    path = tmp_path / "maisons.csv"
    frame.to_csv(path, sep=";", index=False, encoding="latin-1")
    profile = profile_for_goal(path, "predict the prix")
    assert [c.name for c in profile.columns] == ["ville", "surface", "prix"]
    assert profile.target == "prix" and profile.task_type == "regression"
    assert set(profile.column("ville").sample_values) <= {"Orléans", "Besançon", "Nîmes"}  # type: ignore[union-attr]


def test_profile_kinds_ids_and_text_numbers(tmp_path: Path):
    rng = np.random.default_rng(1)
    rows = 300
    frame = pd.DataFrame(
        {
            "RowNumber": np.arange(1, rows + 1),
            "store_id": rng.integers(1, 6, rows),  # an id by name, but a category by content
            "signup": pd.date_range("2020-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "amount": [
                f"{v:.2f}" if i % 50 else " " for i, v in enumerate(rng.normal(10, 2, rows))
            ],
            "active": rng.choice(["yes", "no"], rows),
            "Exited": rng.integers(0, 2, rows),
        }
    )
    path = tmp_path / "bank.csv"
    frame.to_csv(path, index=False)
    profile = profile_for_goal(path, "which customers will leave the bank?")
    kinds = {c.name: c.kind for c in profile.columns}
    assert kinds == {
        "RowNumber": "numeric",
        "store_id": "numeric",
        "signup": "datetime",
        "amount": "numeric",
        "active": "boolean",
        "Exited": "boolean",
    }
    assert profile.id_columns == ["RowNumber"]
    assert profile.column("amount").missing == rows // 50  # type: ignore[union-attr]
    assert profile.target == "Exited" and profile.task_type == "classification"


@pytest.mark.parametrize("content", [b"", b"a,b,c\n", b"\n\n"])
def test_profile_rejects_empty_files(tmp_path: Path, content: bytes):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        profile_for_goal(path, "predict c")


def test_profile_rejects_missing_file(tmp_path: Path):
    with pytest.raises(ValueError, match="not found"):
        profile_for_goal(tmp_path / "nope.csv", "predict y")


@pytest.mark.parametrize(
    ("goal", "names", "expected"),
    [
        (
            "which customers will leave?",
            ["RowNumber", "CustomerId", "CreditScore", "Exited"],
            "Exited",
        ),
        (
            "predict house prices",
            ["MedInc", "HouseAge", "AveRooms", "MedHouseVal", "Latitude"],
            "MedHouseVal",
        ),
        (
            "predict the sale price from the lot area",
            ["LotArea", "SalePrice", "YrSold"],
            "SalePrice",
        ),
        (
            "estimate employee attrition using age and income",
            ["Age", "Income", "Attrition", "Dept"],
            "Attrition",
        ),
        ("fit a model", ["a", "label", "b"], "label"),
        ("fit a model", ["a", "b", "c"], "c"),
    ],
)
def test_target_inference(goal: str, names: list[str], expected: str):
    columns = [ColumnProfile(name=n, kind="numeric", dtype="float64") for n in names]
    id_columns = [n for n in names if n.lower().endswith("id") or n == "RowNumber"]
    assert infer_target(goal, columns, id_columns) == expected


# --- Human feedback -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_text", "dropped"),
    [("Please drop the id column.", "customerID"), ("drop the tenure column", "tenure")],
)
def test_human_feedback_drops_columns(
    request_text: str, dropped: str, csv_files: dict[str, Path], tmp_path: Path
):
    path = csv_files["churn"]
    goal = "build a customer churn prediction model"
    profile = profile_for_goal(path, goal)
    plan = plan_research(goal, profile)
    first = write_eda_code(context(path, goal, profile, plan=plan))
    assert constant(first.code, "DROP_COLUMNS") == []

    ctx = context(
        path, goal, profile, plan=plan, feedback=[feedback("human", request_text)], version=2
    )
    eda = write_eda_code(ctx)
    assert eda.version == 2
    assert constant(eda.code, "DROP_COLUMNS") == [dropped]
    assert dropped in eda.summary
    for name in ("NUMERIC_COLUMNS", "CATEGORICAL_COLUMNS", "OTHER_COLUMNS", "ID_COLUMNS"):
        assert dropped not in constant(eda.code, name)
    run = run_script(eda.code, path, tmp_path, "eda")
    summary = json.loads((run.output / "eda_summary.json").read_text())
    assert dropped not in summary["columns"]
    assert summary["dropped_columns"] == [dropped]
    assert dropped not in summary["missing"] and dropped not in summary["target_associations"]

    # The training code honours the same request.
    training = write_training_code(ctx)
    features = constant(training.code, "NUMERIC_FEATURES") + constant(  # type: ignore[operator]
        training.code, "CATEGORICAL_FEATURES"
    )
    assert dropped not in features
    assert "customerID" not in features and "Churn" not in features


def test_human_feedback_phrasings(csv_files: dict[str, Path]):
    path = csv_files["churn"]
    goal = "predict churn"
    profile = profile_for_goal(path, goal)

    def dropped(*texts: str) -> list[str]:
        ctx = context(path, goal, profile, feedback=[feedback("human", t) for t in texts])
        return constant(write_eda_code(ctx).code, "DROP_COLUMNS")  # type: ignore[return-value]

    assert dropped("exclude gender and PaymentMethod, then show more correlations") == [
        "gender",
        "PaymentMethod",
    ]
    assert dropped("remove column monthly charges") == ["MonthlyCharges"]
    assert dropped("ignore CUSTOMERID please") == ["customerID"]
    assert dropped("drop tenure", "actually, keep tenure") == []
    assert dropped("drop Churn") == []  # the target stays
    assert dropped("looks good but add a histogram") == []

    # A person may also correct the target; the task type follows the new target.
    ctx = context(path, goal, profile, feedback=[feedback("human", "The target should be tenure.")])
    eda = write_eda_code(ctx)
    assert constant(eda.code, "TARGET") == "tenure"
    assert constant(eda.code, "TASK_TYPE") == "regression"
    assert constant(write_training_code(ctx).code, "METRIC") == "r2"


# --- The critic ---------------------------------------------------------------------------------

LEAKY_SCRIPT = """
import os
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

df = pd.read_csv(os.environ.get("DATASET_PATH", "dataset.csv"))
FEATURES = ["tenure", "MonthlyCharges", "Churn"]
X = pd.get_dummies(df[FEATURES])
y = df["Churn"]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
model = RandomForestClassifier(random_state=0, class_weight="balanced").fit(X_train, y_train)
print(model.score(X_test, y_test))
"""

UNSEEDED_SCRIPT = """
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

TARGET = "Churn"
df = pd.read_csv("dataset.csv")
X = pd.get_dummies(df.drop(columns=[TARGET]))
y = df[TARGET]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2)
model = RandomForestClassifier(n_estimators=50).fit(X_train, y_train)
"""


def _churn_ctx(
    csv_files: dict[str, Path], code: str, result: ExecutionResult | None, **kwargs: object
) -> AgentContext:
    path = csv_files["churn"]
    goal = "build a customer churn prediction model"
    profile = profile_for_goal(path, goal)
    return context(
        path,
        goal,
        profile,
        plan=plan_research(goal, profile),
        training_code=GeneratedCode(code=code),
        training_result=result,
        **kwargs,
    )


def _ok(metrics: dict[str, float | str]) -> ExecutionResult:
    return ExecutionResult(backend="local", exit_code=0, duration_seconds=1.0, metrics=metrics)


GOOD_METRICS: dict[str, float | str] = {
    "task_type": "classification",
    "target": "Churn",
    "metric": "roc_auc",
    "score": 0.84,
    "baseline_score": 0.5,
    "cv_mean": 0.82,
    "cv_std": 0.02,
}


CAREFUL_SCRIPT = """
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import cross_val_score, train_test_split

TARGET = "Churn"
SEED = 42
df = pd.read_csv("dataset.csv")
features = [c for c in df.columns if c not in (TARGET, "customerID")]
X = pd.get_dummies(df[features])
y = df[TARGET]
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, random_state=SEED, stratify=y
)
model = HistGradientBoostingClassifier(class_weight="balanced", random_state=SEED)
print(cross_val_score(model, X_train, y_train, cv=5, scoring="roc_auc").mean())
"""


def test_critic_accepts_careful_code_written_elsewhere(csv_files: dict[str, Path]):
    review = review_training(_churn_ctx(csv_files, CAREFUL_SCRIPT, _ok(GOOD_METRICS)))
    assert review.verdict == "accept", review
    assert not [f for f in review.findings if f.severity != "info"], review


def test_critic_flags_target_leakage(csv_files: dict[str, Path]):
    review = review_training(_churn_ctx(csv_files, LEAKY_SCRIPT, _ok(GOOD_METRICS)))
    assert review.verdict == "revise"
    leaks = [f for f in review.findings if f.category == "leakage" and f.severity == "error"]
    assert leaks and "'Churn'" in leaks[0].message

    # The same script after the reviewer asked to drop tenure: ignoring that is an error too.
    ctx = _churn_ctx(
        csv_files,
        LEAKY_SCRIPT.replace(', "Churn"]', "]"),
        _ok(GOOD_METRICS),
        feedback=[feedback("human", "drop tenure")],
    )
    review = review_training(ctx)
    assert review.verdict == "revise"
    assert [f.category for f in review.findings if f.severity == "error"] == ["feedback"]


def test_critic_flags_missing_seed_and_unhandled_imbalance_and_ids(csv_files: dict[str, Path]):
    review = review_training(_churn_ctx(csv_files, UNSEEDED_SCRIPT, _ok(GOOD_METRICS)))
    assert review.verdict == "revise"
    categories = {(f.category, f.severity) for f in review.findings}
    assert ("reproducibility", "error") in categories  # train_test_split without random_state
    assert ("reproducibility", "warning") in categories  # the forest without one
    assert any(f.category == "imbalance" for f in review.findings)
    # X = df.drop(columns=[TARGET]) keeps the identifier column among the features.
    assert any(f.category == "leakage" and "customerID" in f.message for f in review.findings)


def test_critic_flags_failed_runs_weak_models_and_bad_syntax(csv_files: dict[str, Path]):
    path = csv_files["churn"]
    goal = "build a customer churn prediction model"
    profile = profile_for_goal(path, goal)
    good = write_training_code(context(path, goal, profile, plan=plan_research(goal, profile)))

    failed = ExecutionResult(
        backend="local",
        exit_code=1,
        duration_seconds=0.5,
        stderr_tail="Traceback (most recent call last):\nValueError: could not convert 'x'",
    )
    review = review_training(_churn_ctx(csv_files, good.code, failed))
    assert review.verdict == "revise"
    [error] = [f for f in review.findings if f.severity == "error"]
    assert error.category == "execution" and "could not convert" in error.message

    weak = _ok({**GOOD_METRICS, "score": 0.5})
    review = review_training(_churn_ctx(csv_files, good.code, weak))
    assert review.verdict == "revise"
    assert any(f.category == "baseline" and f.severity == "error" for f in review.findings)

    lower_is_better = _ok({**GOOD_METRICS, "metric": "rmse", "score": 3.0, "baseline_score": 5.0})
    assert review_training(_churn_ctx(csv_files, good.code, lower_is_better)).verdict == "accept"

    review = review_training(_churn_ctx(csv_files, "def broken(:\n", _ok(GOOD_METRICS)))
    assert review.verdict == "revise"
    assert any(f.category == "syntax" for f in review.findings)


def test_training_code_addresses_critic_findings(csv_files: dict[str, Path], tmp_path: Path):
    path = csv_files["wine"]
    goal = "predict the wine cultivar"
    profile = profile_for_goal(path, goal)
    plan = plan_research(goal, profile)
    first = write_training_code(context(path, goal, profile, plan=plan))
    assert constant(first.code, "CLASS_WEIGHT") is None  # wine's classes are fairly balanced
    assert "proline" in constant(first.code, "NUMERIC_FEATURES")  # type: ignore[operator]

    review_text = (
        "revise: 2 problem(s) to fix (imbalance, leakage)\n"
        "[error] imbalance: the classes are imbalanced; use class_weight='balanced'\n"
        "[error] leakage: Column 'proline' looks derived from the target\n"
        "[error] baseline: The model does not beat the trivial baseline"
    )
    ctx = context(
        path, goal, profile, plan=plan, feedback=[feedback("critic", review_text)], version=2
    )
    revised = write_training_code(ctx)
    assert constant(revised.code, "CLASS_WEIGHT") == "balanced"
    assert "proline" not in constant(revised.code, "NUMERIC_FEATURES")  # type: ignore[operator]
    assert "proline" in constant(revised.code, "EXCLUDED_COLUMNS")  # type: ignore[operator]
    assert revised.code.count("n_estimators") > first.code.count("n_estimators") or (
        revised.code.count("HistGradientBoosting") > first.code.count("HistGradientBoosting")
    )
    assert "critic" in revised.summary.lower()
    metrics = run_script(revised.code, path, tmp_path, "revised").result.metrics or {}
    assert {"cv_logistic_regression", "cv_random_forest", "cv_hist_gradient_boosting"} <= set(
        metrics
    )
    assert metrics["class_weight"] == "balanced"

    # After a failed run the next version is lighter: no forest, fewer rows.
    crashed = "revise: 1 problem(s)\n[error] execution: The training run failed with exit code 137"
    ctx = context(path, goal, profile, plan=plan, feedback=[feedback("critic", crashed)])
    light = write_training_code(ctx)
    assert "RandomForest" not in light.code.split("def candidate_models")[1].split("def ")[0]
    assert constant(light.code, "MAX_ROWS") < constant(first.code, "MAX_ROWS")  # type: ignore[operator]

    # An accepted review's summary mentions the baseline, but asks for nothing.
    accepted = "accept: Accept: roc_auc 0.9 on the test set vs 0.5 for the baseline."
    ctx = context(path, goal, profile, plan=plan, feedback=[feedback("critic", accepted)])
    assert write_training_code(ctx).code == first.code


def test_generated_code_survives_odd_names_and_goals(tmp_path: Path):
    rng = np.random.default_rng(5)
    rows = 300
    signal = rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            'it\'s "odd"': signal + rng.normal(0, 0.3, rows),
            "naïve größe": rng.normal(size=rows),
            "back\\slash": rng.choice(["a", "b"], rows),
            "outcome": np.where(signal > 0, "up", "down"),
        }
    )
    path = tmp_path / "odd.csv"
    frame.to_csv(path, index=False)
    goal = 'predict the outcome """ \\N{oops} \\'
    profile = profile_for_goal(path, goal)
    assert profile.target == "outcome"
    ctx = context(path, goal, profile, plan=plan_research(goal, profile))
    for label, generated in (("eda", write_eda_code(ctx)), ("train", write_training_code(ctx))):
        run = run_script(generated.code, path, tmp_path, label)
        if label == "train":
            metrics = run.result.metrics or {}
            assert float(metrics["score"]) > float(metrics["baseline_score"])


def test_csv_dialect_is_decided_by_profiling_and_carried_into_generated_scripts(tmp_path: Path):
    rng = np.random.default_rng(11)
    rows = 240
    surface = rng.normal(80, 20, rows).round(1)
    frame = pd.DataFrame(
        {
            "ville": rng.choice(["Orléans", "Besançon", "Nîmes"], rows),
            "surface": surface,
            "prix": (surface * 3_000 + rng.normal(0, 10_000, rows)).round(0),
        }
    )
    path = tmp_path / "maisons.csv"
    frame.to_csv(path, sep=";", index=False, encoding="latin-1")
    profile = profile_for_goal(path, "predict the prix")
    assert (profile.delimiter, profile.encoding) == (";", "latin-1")

    ctx = context(path, "predict the prix", profile, plan=plan_research("predict", profile))
    eda, training = write_eda_code(ctx), write_training_code(ctx)
    for label, generated in (("eda", eda), ("train", training)):
        # The script is handed the dialect; it does not decide it again.
        assert constant(generated.code, "CSV_DELIMITER") == ";"
        assert constant(generated.code, "CSV_ENCODING") == "latin-1"
        assert "delimiter=CSV_DELIMITER" in generated.code
        run = run_script(generated.code, path, tmp_path, label)
        if label == "eda":
            summary = json.loads((run.output / "eda_summary.json").read_text())
            assert "Besançon" in json.dumps(summary, ensure_ascii=False)
    metrics = run.result.metrics or {}
    assert metrics["target"] == "prix" and float(metrics["score"]) > float(
        metrics["baseline_score"]
    )


def test_dataset_reader_uses_the_given_dialect_over_its_own_sniffing(tmp_path: Path):
    from activities.offline.templates.dataset_reader import load_dataset

    # Sniffing the header alone would split it on commas, and read these bytes as UTF-8.
    path = tmp_path / "odd.csv"
    path.write_bytes("a,b,c,d;Ã©\n1,2,3,4;x\n5,6,7,8;y\n".encode("latin-1"))
    sniffed = load_dataset(str(path))
    assert list(sniffed.columns) == ["a", "b", "c", "d;é"]
    told = load_dataset(str(path), delimiter=";", encoding="latin-1")
    assert list(told.columns) == ["a,b,c,d", "Ã©"]
    assert told["Ã©"].tolist() == ["x", "y"]
