"""A whole run with the LLM-backed agents, approved, ends completed with real, accounted results.

The real dev server, `python worker.py` and the API as subprocesses; the agents use the OpenAI
provider, pointed (OPENAI_BASE_URL) at a local stand-in that recognises which agent asks and
answers it as a good model would: a plan naming real columns, EDA and training scripts that
really run in the sandbox on the churn data, and a review. Its first Data Engineering answer
is not JSON, so the validate-and-retry loop runs inside the real run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.llm import prompts
from activities.llm.base import describe_invalid, extract_json_object
from activities.llm.pricing import estimate_cost_usd
from tests.conftest import ServiceProcesses
from tests.llm_standin import (
    FakeLlmServer,
    Recorded,
    Scripted,
    openai_error,
    openai_messages,
    openai_ok,
    service_using,
)
from tests.sample_data import make_churn
from tests.test_service_integration import GOAL, awaiting_approval, start, wait_until
from workflows.models import Review

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"  # listed in activities/llm/pricing.py, so the cost is estimable
API_KEY = "sk-test-whole-run"

# --- What the stand-in model answers --------------------------------------------------------------

PLAN = {
    "steps": [
        "Profile the data: types, missing values, the class balance of Churn",
        "Convert TotalCharges to numbers; impute missing values",
        "One-hot encode the categorical columns",
        "Train a logistic regression with a stratified split and 5-fold cross-validation",
        "Compare ROC AUC with a trivial baseline",
    ],
    "target": "Churn",
    "task_type": "classification",
    "features": [
        "gender",
        "SeniorCitizen",
        "tenure",
        "Contract",
        "PaymentMethod",
        "MonthlyCharges",
        "TotalCharges",
    ],
    "excluded_columns": ["customerID"],
    "rationale": "The goal names churn; customerID only identifies rows.",
}

EDA_CODE = """\
import json
import os

import pandas as pd

DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", ".")
TARGET = "Churn"

df = pd.read_csv(DATASET_PATH)
df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce")
print("shape:", df.shape)
print(df.dtypes.to_string())
missing = df.isna().sum()
print("missing values per column:")
print(missing.to_string())
print(df.describe().to_string())
print("target distribution:")
print(df[TARGET].value_counts(normalize=True).to_string())
issues = [f"{column} has {count} missing values" for column, count in missing.items() if count]
issues.append("customerID is an identifier")
summary = {
    "rows": len(df),
    "columns": list(df.columns),
    "target": TARGET,
    "task_type": "classification",
    "missing": {column: int(count) for column, count in missing.items()},
    "issues": issues,
}
with open(os.path.join(OUTPUT_DIR, "eda_summary.json"), "w") as f:
    json.dump(summary, f, indent=2, default=str)
print("wrote eda_summary.json")
"""

TRAINING_CODE = """\
import json
import os

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", ".")
TARGET = "Churn"
NUMERIC = ["SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges"]
CATEGORICAL = ["gender", "Contract", "PaymentMethod"]

df = pd.read_csv(DATASET_PATH)
df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce")
X = df[NUMERIC + CATEGORICAL]
y = (df[TARGET] == "Yes").astype(int)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=42
)

preprocess = ColumnTransformer(
    [
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        (
            "cat",
            make_pipeline(
                SimpleImputer(strategy="most_frequent"),
                OneHotEncoder(handle_unknown="ignore"),
            ),
            CATEGORICAL,
        ),
    ]
)
model = Pipeline([("preprocess", preprocess), ("model", LogisticRegression(max_iter=1000))])
cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=42)
cv_scores = cross_val_score(model, X_train, y_train, cv=cv, scoring="roc_auc")
model.fit(X_train, y_train)
score = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
baseline = DummyClassifier(strategy="prior").fit(X_train, y_train)
baseline_score = roc_auc_score(y_test, baseline.predict_proba(X_test)[:, 1])

metrics = {
    "task_type": "classification",
    "target": TARGET,
    "metric": "roc_auc",
    "score": float(score),
    "baseline_score": float(baseline_score),
    "cv_mean": float(cv_scores.mean()),
    "cv_std": float(cv_scores.std()),
}
with open(os.path.join(OUTPUT_DIR, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)
joblib.dump(model, os.path.join(OUTPUT_DIR, "model.joblib"))
schema = {
    "target": TARGET,
    "required": NUMERIC + CATEGORICAL,
    "columns": [{"name": c, "dtype": str(df[c].dtype), "role": "feature"} for c in df.columns],
}
with open(os.path.join(OUTPUT_DIR, "input_schema.json"), "w") as f:
    json.dump(schema, f)
print(json.dumps(metrics, indent=2))
print("ROC AUC %.3f against a baseline of %.3f" % (score, baseline_score))
"""

REVIEW = {
    "verdict": "accept",
    "summary": "A sound logistic regression that clearly beats the baseline on ROC AUC.",
    "findings": [
        {
            "severity": "info",
            "category": "evaluation",
            "message": "Stratified hold-out split and 5-fold cross-validation.",
        }
    ],
}

# Not JSON at all: the model "forgot" the format; the stand-in sends this once.
INVALID_EDA_REPLY = 'Here is the EDA script you asked for:\n{"code": import pandas as pd ...'

ANSWERS: dict[str, dict[str, Any]] = {
    "research": PLAN,
    "data_engineering": {"code": EDA_CODE, "summary": "Profiles the data and the target."},
    "ml": {"code": TRAINING_CODE, "summary": "Logistic regression in a Pipeline; ROC AUC."},
    "critic": REVIEW,
}

# Each agent's system prompt opens with who it is, and its output contract names the schema.
AGENTS = {
    "research": ("You are the Research agent", "ResearchPlan"),
    "data_engineering": ("You are the Data Engineering agent", "CodeAnswer"),
    "ml": ("You are the ML agent", "CodeAnswer"),
    "critic": ("You are the Critic agent", "Review"),
}


@dataclass
class Exchange:
    agent: str
    request: Recorded
    reply_text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class AgentStandIn:
    """Recognises the asking agent, answers it, and remembers what it reported as usage."""

    exchanges: list[Exchange] = field(default_factory=list)

    def __call__(self, request: Recorded) -> Scripted:
        # FakeLlmServer calls its responder one request at a time, so no lock is needed here.
        if request.path != "/v1/chat/completions":
            return openai_error(404, f"unexpected path {request.path}")
        agent = recognise(request)
        first_eda = agent == "data_engineering" and not self.of("data_engineering")
        text = INVALID_EDA_REPLY if first_eda else json.dumps(ANSWERS[agent])
        # Token counts that differ per request (about 4 characters a token), so the sums in the
        # run's usage can only match if every request, retries too, was counted.
        sent = sum(len(m["content"]) for m in request.body["messages"])
        exchange = Exchange(agent, request, text, sent // 4, len(text) // 4 + 1)
        self.exchanges.append(exchange)
        return openai_ok(text, prompt=exchange.prompt_tokens, completion=exchange.completion_tokens)

    def of(self, agent: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.agent == agent]


def recognise(request: Recorded) -> str:
    (system,) = openai_messages(request, "system")
    for agent, (opening, schema_title) in AGENTS.items():
        if system.startswith(opening):
            assert f'"title":"{schema_title}"' in system, f"{agent} asked for another schema"
            return agent
    raise AssertionError(f"no agent recognised in the system prompt {system[:80]!r}")


# --- Fixtures: the stand-in, and the worker and API pointed at it ---------------------------------


@pytest.fixture(scope="module")
def llm_service(
    dev_server_env: WorkflowEnvironment,
    llm: FakeLlmServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcesses]:
    with service_using(
        llm,
        dev_server_env.client.service_client.config.target_host,
        tmp_path_factory.mktemp("llm-whole-run-data"),
        OPENAI_API_KEY=API_KEY,
        OPENAI_MODEL=MODEL,
    ) as processes:
        yield processes


@pytest.fixture
def api(llm_service: ServiceProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm_service.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def standin(llm: FakeLlmServer) -> Iterator[AgentStandIn]:
    llm.reset()
    responder = AgentStandIn()
    llm.responder = responder
    try:
        yield responder
    finally:
        llm.reset()


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("datasets") / "churn.csv"
    make_churn(rows=1000).to_csv(path, index=False)
    return str(path)


# --- The run --------------------------------------------------------------------------------------


def test_an_llm_backed_run_is_approved_completes_and_accounts_for_every_token(
    api: httpx.Client, standin: AgentStandIn, churn_csv: str
) -> None:
    workflow_id = start(api, churn_csv)
    try:
        waiting = wait_until(api, workflow_id, awaiting_approval, timeout=60)
        assert waiting["current_step"] == "human_approval"
        assert waiting["research_plan_steps"] == len(PLAN["steps"])
        state = api.get(f"/workflow/{workflow_id}").json()
        assert {key: state["plan"][key] for key in PLAN} == PLAN
        # How sure the target is comes from the service's reading of the goal, not the model.
        assert state["plan"]["target_confidence"] >= 0.6
        assert not state["plan"]["needs_target_choice"]
        eda = state["code_context"]["eda_code"]
        assert (eda["code"], eda["version"]) == (EDA_CODE, 1)  # the retry's answer, not the bad one

        response = api.post(f"/workflow/{workflow_id}/approve", json={"version": 1})
        assert response.status_code == 200, response.text
        done = wait_until(api, workflow_id, lambda b: b["status"] == "completed", timeout=90)
    except BaseException:
        with contextlib.suppress(httpx.HTTPError):  # leave nothing running; keep the real error
            api.post(f"/workflow/{workflow_id}/cancel")
        raise
    assert done["current_step"] == "complete" and done["last_error"] is None

    state = api.get(f"/workflow/{workflow_id}").json()
    assert state["status"] == "completed" and state["human_approval"] == "APPROVED"

    # The scripts really ran in the sandbox on the churn data.
    eda_result = state["code_context"]["eda_result"]
    assert eda_result["exit_code"] == 0, eda_result["stderr_tail"]
    assert "target distribution:" in eda_result["stdout_tail"]
    training = state["code_context"]["training_code"]
    assert (training["code"], training["version"]) == (TRAINING_CODE, 1)
    result = state["code_context"]["training_result"]
    assert result["exit_code"] == 0, result["stderr_tail"]
    metrics = result["metrics"]
    assert (metrics["task_type"], metrics["target"], metrics["metric"]) == (
        "classification",
        "Churn",
        "roc_auc",
    )
    assert float(metrics["baseline_score"]) == pytest.approx(0.5)  # a constant predictor
    assert float(metrics["score"]) > float(metrics["baseline_score"]) + 0.1
    assert 0.0 < float(metrics["cv_mean"]) <= 1.0 and float(metrics["cv_std"]) >= 0.0
    assert (
        Review.model_validate(state["review"]) == Review.model_validate(REVIEW)
        and state["critic_rounds"] == 0
    )

    # Who was asked, in which order, and that each saw what it needed.
    exchanges = standin.exchanges
    assert [e.agent for e in exchanges] == [
        "research",
        "data_engineering",
        "data_engineering",
        "ml",
        "critic",
    ]
    for exchange in exchanges:
        assert exchange.request.body["model"] == MODEL
        assert exchange.request.body["response_format"] == {"type": "json_object"}
        assert exchange.request.headers["authorization"] == f"Bearer {API_KEY}"
        assert f"## User goal\n{GOAL}" in openai_messages(exchange.request, "user")[0]
    (critic,) = standin.of("critic")
    assert json.dumps(metrics, default=str) in openai_messages(critic.request, "user")[0]

    # The invalid answer was fed back with the error, and the retry carried the conversation.
    first, retry = standin.of("data_engineering")
    assert [m["role"] for m in first.request.body["messages"]] == ["system", "user"]
    assert [m["role"] for m in retry.request.body["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert retry.request.body["messages"][:2] == first.request.body["messages"]
    assert openai_messages(retry.request, "assistant") == [INVALID_EDA_REPLY]
    with pytest.raises(ValueError) as invalid:
        extract_json_object(INVALID_EDA_REPLY)
    expected_feedback = prompts.validation_feedback(describe_invalid(invalid.value))
    assert "not valid JSON" in expected_feedback
    assert openai_messages(retry.request, "user")[-1] == expected_feedback

    # Usage: one entry per agent call, the retry's tokens inside Data Engineering's entry.
    usage = state["usage"]
    assert len(usage) == 4
    assert all((u["provider"], u["model"]) == ("openai", MODEL) for u in usage)
    for entry, agent in zip(usage, ["research", "data_engineering", "ml", "critic"], strict=True):
        sent = sum(e.prompt_tokens for e in standin.of(agent))
        received = sum(e.completion_tokens for e in standin.of(agent))
        assert (entry["input_tokens"], entry["output_tokens"]) == (sent, received), agent
        assert entry["cost_usd"] == estimate_cost_usd(MODEL, sent, received)
    totals = state["usage_totals"]
    assert totals["calls"] == 4
    assert totals["input_tokens"] == sum(e.prompt_tokens for e in exchanges)
    assert totals["output_tokens"] == sum(e.completion_tokens for e in exchanges)
    assert totals["cost_usd"] > 0
    assert totals["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in usage), abs=1e-6)

    # What the run produced is listed and downloadable.
    listing = api.get(f"/workflow/{workflow_id}/artifacts")
    assert listing.status_code == 200, listing.text
    names = {a["name"] for a in listing.json()["artifacts"]}
    for name in (
        "data_engineering_agent/v1/code.py",
        "browser_agent/v1/eda_summary.json",
        "ml_agent/v1/code.py",
        "ml_worker/v1/metrics.json",
        "ml_worker/v1/model.joblib",
        "ml_worker/v1/input_schema.json",
    ):
        assert name in names, f"{name} missing from {sorted(names)}"
    downloaded = api.get(f"/workflow/{workflow_id}/artifacts/ml_worker/v1/metrics.json")
    assert downloaded.status_code == 200
    assert downloaded.json()["score"] == metrics["score"]
    summary = api.get(f"/workflow/{workflow_id}/artifacts/browser_agent/v1/eda_summary.json")
    assert summary.json()["target"] == "Churn" and summary.json()["rows"] == 1000

    # The model the LLM wrote predicts through the API, checked against the schema it wrote.
    frame = pd.read_csv(churn_csv)
    rows = frame[pd.to_numeric(frame["TotalCharges"], errors="coerce").notna()].head(3)
    records = rows.drop(columns=["Churn"]).astype(str).to_dict(orient="records")
    scored = api.post(f"/workflow/{workflow_id}/predict", json={"rows": records})
    assert scored.status_code == 200, scored.text
    assert len(scored.json()["predictions"]) == 3
