"""The LLM provider layer against the real OpenAI and Anthropic SDKs over real local HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.llm import (
    INVALID_MODEL_OUTPUT,
    LLM_CONFIGURATION_ERROR,
    LLM_REQUEST_REFUSED,
    LLM_TRANSIENT_ERROR,
    LlmAgents,
    LlmProvider,
    build_provider,
)
from activities.llm.anthropic_provider import AnthropicProvider
from activities.llm.base import extract_json_object
from activities.llm.errors import Scrubber, retry_after, safe_url
from activities.llm.openai_provider import OpenAIProvider
from activities.llm.pricing import estimate_cost_usd, price_for
from settings import Settings
from tests.llm_standin import FakeLlmServer, Recorded, Scripted, openai_error, openai_ok
from workflows.models import (
    AgentContext,
    ColumnProfile,
    DatasetInfo,
    DatasetProfile,
    ExecutionResult,
    Feedback,
    GeneratedCode,
    ResearchPlan,
    Step,
)

SECRET_KEY = "sk-test-SECRETKEY-0123456789abcdef"

# --- A scripted server that speaks both wire formats (tests/llm_standin.py) ------------------------


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeLlmServer]:
    server = FakeLlmServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(llm_server: FakeLlmServer, monkeypatch: pytest.MonkeyPatch) -> FakeLlmServer:
    llm_server.reset()
    # A proxy from the environment must not intercept calls to the local server.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return llm_server


# --- Each provider's wire format, so one test body covers both ------------------------------------


@dataclass
class Wire:
    name: str
    model: str
    key_env: str
    model_env: str
    build: Callable[..., LlmProvider]
    ok: Callable[..., Scripted]
    error: Callable[..., Scripted]
    # The conversation turns (after the system prompt) a recorded request carried.
    turns: Callable[[Recorded], list[dict[str, Any]]]
    system: Callable[[Recorded], str]


def _anthropic_ok(
    text: str, prompt: int = 100, completion: int = 50, stop: str = "end_turn"
) -> Scripted:
    return Scripted(
        200,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-latest",
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": completion},
        },
    )


def _anthropic_error(status: int, message: str, code: str | None = None) -> Scripted:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    return Scripted(
        status,
        {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}},
    )


def _build_openai(server: FakeLlmServer, **kw: Any) -> LlmProvider:
    options: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "api_key": SECRET_KEY,
        "base_url": f"{server.url}/v1",
        "timeout_seconds": 5.0,
        "max_validation_retries": 2,
    }
    return OpenAIProvider(**{**options, **kw})


def _build_anthropic(server: FakeLlmServer, **kw: Any) -> LlmProvider:
    options: dict[str, Any] = {
        "model": "claude-3-5-haiku-latest",
        "api_key": SECRET_KEY,
        "base_url": server.url,
        "timeout_seconds": 5.0,
        "max_validation_retries": 2,
    }
    return AnthropicProvider(**{**options, **kw})


WIRES = {
    "openai": Wire(
        name="openai",
        model="gpt-4o-mini",
        key_env="OPENAI_API_KEY",
        model_env="OPENAI_MODEL",
        build=_build_openai,
        ok=openai_ok,
        error=openai_error,
        turns=lambda r: r.body["messages"][1:],
        system=lambda r: r.body["messages"][0]["content"],
    ),
    "anthropic": Wire(
        name="anthropic",
        model="claude-3-5-haiku-latest",
        key_env="ANTHROPIC_API_KEY",
        model_env="ANTHROPIC_MODEL",
        build=_build_anthropic,
        ok=_anthropic_ok,
        error=_anthropic_error,
        turns=lambda r: r.body["messages"],
        system=lambda r: r.body["system"],
    ),
}


@pytest.fixture(params=sorted(WIRES))
def wire(request: pytest.FixtureRequest) -> Wire:
    return WIRES[request.param]


@pytest.fixture
async def make(server: FakeLlmServer, wire: Wire) -> AsyncIterator[Callable[..., LlmProvider]]:
    built: list[LlmProvider] = []

    def factory(**kw: Any) -> LlmProvider:
        provider = wire.build(server, **kw)
        built.append(provider)
        return provider

    yield factory
    for provider in built:
        await provider.aclose()


PLAN = {
    "steps": ["explore", "train", "evaluate"],
    "target": "Survived",
    "task_type": "classification",
    "features": ["Age", "Sex"],
    "rationale": "goal names it",
}


def _assert_no_secret(err: BaseException) -> None:
    text = "".join(traceback.format_exception(err)) + repr(err) + repr(getattr(err, "details", ""))
    assert SECRET_KEY not in text
    assert "SECRETKEY" not in text


# --- Both providers -------------------------------------------------------------------------------


async def test_structured_answer_is_validated_and_usage_recorded(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    # Anthropic gets prose and a fence around the JSON, which the parser must tolerate.
    text = (
        json.dumps(PLAN)
        if wire.name == "openai"
        else f"Here it is:\n```json\n{json.dumps(PLAN)}\n```"
    )
    server.enqueue(wire.ok(text, 1000, 200))
    provider = make()

    plan, usage = await provider.generate(
        system="You plan.",
        user="Goal: predict survival",
        output_model=ResearchPlan,
        agent="research",
    )

    assert plan == ResearchPlan.model_validate(PLAN)
    assert (usage.provider, usage.model) == (wire.name, wire.model)
    assert (usage.input_tokens, usage.output_tokens) == (1000, 200)
    assert usage.latency_ms > 0
    expected = {
        "openai": (1000 * 0.15 + 200 * 0.60) / 1e6,
        "anthropic": (1000 * 0.8 + 200 * 4.0) / 1e6,
    }
    assert usage.cost_usd == pytest.approx(expected[wire.name])

    [request] = server.requests
    assert request.body["model"] == wire.model
    assert wire.turns(request) == [{"role": "user", "content": "Goal: predict survival"}]
    system = wire.system(request)
    assert system.startswith("You plan.") and '"target"' in system and "JSON" in system
    if wire.name == "openai":
        assert request.path == "/v1/chat/completions"
        assert request.body["response_format"] == {"type": "json_object"}
        assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"
    else:
        assert request.path == "/v1/messages"
        assert request.body["max_tokens"] > 0
        # This SDK generation sends the key as a bearer token; older ones used x-api-key.
        sent = request.headers.get("x-api-key") or request.headers["authorization"]
        assert sent.removeprefix("Bearer ") == SECRET_KEY


async def test_invalid_output_is_fed_back_and_usage_summed(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    server.enqueue(
        wire.ok("Sure! {not json", 100, 10),
        wire.ok(json.dumps({**PLAN, "steps": []}), 200, 20),  # valid JSON, fails the schema
        wire.ok(json.dumps(PLAN), 300, 30),
    )
    plan, usage = await make().generate(
        system="s", user="u", output_model=ResearchPlan, agent="research"
    )

    assert plan.target == "Survived"
    assert (usage.input_tokens, usage.output_tokens) == (600, 60)
    assert len(server.requests) == 3
    second, third = wire.turns(server.requests[1]), wire.turns(server.requests[2])
    # The model sees its own bad reply, then why it was rejected.
    assert second[1] == {"role": "assistant", "content": "Sure! {not json"}
    assert second[2]["role"] == "user" and "not valid JSON" in second[2]["content"]
    assert "steps" in third[4]["content"] and "at least 1 item" in third[4]["content"]


async def test_validation_retries_exhausted_is_non_retryable(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    server.enqueue(wire.ok("nope", 10, 1), wire.ok('{"steps": ["a"]}', 10, 1))
    with pytest.raises(ApplicationError) as info:
        await make(max_validation_retries=1).generate(
            system="s", user="u", output_model=ResearchPlan, agent="research_agent"
        )
    err = info.value
    assert err.type == INVALID_MODEL_OUTPUT and err.non_retryable
    assert "research_agent" in err.message and wire.model in err.message
    assert "target" in err.message  # the last validation error: missing fields
    assert err.details[0]["input_tokens"] == 20  # tokens spent are still reported
    assert len(server.requests) == 2


async def test_rate_limit_with_retry_after_is_retryable_with_delay(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    reply = wire.error(429, "Rate limit reached")
    reply.headers["retry-after"] = "7"
    server.enqueue(reply)
    with pytest.raises(ApplicationError) as info:
        await make().generate(system="s", user="u", output_model=ResearchPlan)
    err = info.value
    assert err.type == LLM_TRANSIENT_ERROR and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=7)
    assert len(server.requests) == 1  # the SDK's own retries are off


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_are_retryable(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider], status: int
) -> None:
    server.enqueue(wire.error(status, "upstream broke"))
    with pytest.raises(ApplicationError) as info:
        await make().generate(system="s", user="u", output_model=ResearchPlan)
    err = info.value
    assert err.type == LLM_TRANSIENT_ERROR and not err.non_retryable
    assert err.next_retry_delay is None
    assert str(status) in err.message
    assert len(server.requests) == 1


async def test_bad_key_is_non_retryable_actionable_and_secret_free(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    # Real APIs sometimes quote the key back; the proxy here even quotes it whole.
    server.enqueue(wire.error(401, f"Incorrect API key provided: {SECRET_KEY}", "invalid_api_key"))
    with pytest.raises(ApplicationError) as info:
        await make().generate(system="s", user="u", output_model=ResearchPlan)
    err = info.value
    assert err.type == LLM_CONFIGURATION_ERROR and err.non_retryable
    assert "(401)" in err.message and f"check {wire.key_env}" in err.message
    assert err.__cause__ is None  # the SDK exception is not serialised into the failure
    _assert_no_secret(err)


async def test_unknown_model_is_non_retryable(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    server.enqueue(wire.error(404, "model 'gpt-nope' does not exist", "model_not_found"))
    with pytest.raises(ApplicationError) as info:
        await make(model="gpt-nope").generate(system="s", user="u", output_model=ResearchPlan)
    err = info.value
    assert err.type == LLM_CONFIGURATION_ERROR and err.non_retryable
    assert "model 'gpt-nope' not found" in err.message
    assert wire.model_env in err.message and server.url in err.message
    assert usage_free(err)


def usage_free(err: ApplicationError) -> bool:
    return not err.details  # API errors happen before any output, so no usage to report


async def test_bad_request_is_refused_non_retryable(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    server.enqueue(wire.error(400, "prompt is too long: 300000 tokens > 200000 maximum"))
    with pytest.raises(ApplicationError) as info:
        await make().generate(system="s", user="u", output_model=ResearchPlan)
    err = info.value
    assert err.type == LLM_REQUEST_REFUSED and err.non_retryable
    assert "prompt is too long" in err.message


async def test_timeout_and_unreachable_server_are_retryable(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    server.enqueue(Scripted(200, {}, delay=1.0))
    with pytest.raises(ApplicationError) as info:
        await make(timeout_seconds=0.2).generate(system="s", user="u", output_model=ResearchPlan)
    assert info.value.type == LLM_TRANSIENT_ERROR and not info.value.non_retryable
    assert "timed out" in info.value.message

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    base = f"http://127.0.0.1:{closed}" + ("/v1" if wire.name == "openai" else "")
    with pytest.raises(ApplicationError) as info:
        await make(base_url=base).generate(system="s", user="u", output_model=ResearchPlan)
    assert info.value.type == LLM_TRANSIENT_ERROR and not info.value.non_retryable
    assert "could not be reached" in info.value.message


async def test_truncated_reply_is_retried_with_a_hint(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    cut = json.dumps(PLAN)[:40]
    stop = {"finish": "length"} if wire.name == "openai" else {"stop": "max_tokens"}
    server.enqueue(wire.ok(cut, 10, 10, **stop), wire.ok(json.dumps(PLAN), 10, 10))
    plan, _ = await make().generate(system="s", user="u", output_model=ResearchPlan)
    assert plan.target == "Survived"
    assert "cut off" in wire.turns(server.requests[1])[-1]["content"]


async def test_model_refusal_is_non_retryable(
    server: FakeLlmServer, wire: Wire, make: Callable[..., LlmProvider]
) -> None:
    if wire.name == "openai":
        server.enqueue(openai_ok("", 10, 5, refusal="I can't help with that."))
    else:
        server.enqueue(_anthropic_ok("I can't help with that.", 10, 5, stop="refusal"))
    with pytest.raises(ApplicationError) as info:
        await make().generate(system="s", user="u", output_model=ResearchPlan, agent="critic")
    err = info.value
    assert err.type == LLM_REQUEST_REFUSED and err.non_retryable
    assert "declined" in err.message and "can't help" in err.message
    assert len(server.requests) == 1


# --- Provider-specific behaviour ------------------------------------------------------------------


async def test_openai_compatible_server_without_key(server: FakeLlmServer) -> None:
    server.enqueue(openai_ok(json.dumps(PLAN)))
    provider = OpenAIProvider(model="llama3.1", api_key=None, base_url=f"{server.url}/v1")
    try:
        _, usage = await provider.generate(system="s", user="u", output_model=ResearchPlan)
    finally:
        await provider.aclose()
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"
    assert usage.cost_usd is None  # a local model has no list price


async def test_openai_server_without_json_mode_falls_back(server: FakeLlmServer) -> None:
    server.enqueue(
        openai_error(400, "'response_format.type' must be 'json_schema' or 'text'"),
        openai_ok(json.dumps(PLAN)),
        openai_ok(json.dumps(PLAN)),
    )
    provider = _build_openai(server)
    try:
        await provider.generate(system="s", user="u", output_model=ResearchPlan)
        await provider.generate(system="s", user="u", output_model=ResearchPlan)
    finally:
        await provider.aclose()
    assert "response_format" in server.requests[0].body
    assert all("response_format" not in r.body for r in server.requests[1:])


async def test_openai_out_of_quota_is_not_retried(server: FakeLlmServer) -> None:
    server.enqueue(openai_error(429, "You exceeded your current quota", "insufficient_quota"))
    provider = _build_openai(server)
    try:
        with pytest.raises(ApplicationError) as info:
            await provider.generate(system="s", user="u", output_model=ResearchPlan)
    finally:
        await provider.aclose()
    assert info.value.type == LLM_CONFIGURATION_ERROR and info.value.non_retryable
    assert "quota" in info.value.message and "OPENAI_API_KEY" in info.value.message


def test_provider_without_credentials_fails_clearly() -> None:
    with pytest.raises(ApplicationError, match="OPENAI_API_KEY"):
        OpenAIProvider(model="gpt-4o-mini", api_key=None)
    with pytest.raises(ApplicationError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(model="claude-3-5-haiku-latest", api_key=None)


# --- The agents, end to end over the wire ---------------------------------------------------------


def _context(**kw: Any) -> AgentContext:
    profile = DatasetProfile(
        rows=891,
        columns=[
            ColumnProfile(
                name="PassengerId",
                kind="numeric",
                dtype="int64",
                unique=891,
                mean=446.0,
                std=257.4,
                min=1,
                max=891,
            ),
            ColumnProfile(
                name="Survived",
                kind="categorical",
                dtype="int64",
                unique=2,
                sample_values=["0", "1"],
            ),
            ColumnProfile(
                name="Age",
                kind="numeric",
                dtype="float64",
                missing=177,
                unique=88,
                mean=29.7,
                std=14.5,
                min=0.42,
                max=80,
            ),
            ColumnProfile(
                name="Sex",
                kind="categorical",
                dtype="object",
                unique=2,
                sample_values=["male", "female"],
            ),
        ],
        target="Survived",
        task_type="classification",
        id_columns=["PassengerId"],
        class_balance={"0": 549, "1": 342},
    )
    info = DatasetInfo(
        source_url="https://example.org/titanic.csv",
        file_path="/data/ds/titanic.csv",
        size_bytes=61194,
        sha256="0" * 64,
        profile=profile,
    )
    return AgentContext(
        workflow_id="wf-1", user_goal="Predict who survived the Titanic", dataset=info, **kw
    )


EDA_CODE = """\
import json, os
import pandas as pd
DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", ".")
df = pd.read_csv(DATASET_PATH)
print(df.describe())
with open(os.path.join(OUTPUT_DIR, "eda_summary.json"), "w") as f:
    json.dump({"rows": len(df)}, f)
"""

TRAIN_CODE = """\
import json, os
import joblib
from sklearn.dummy import DummyClassifier
DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", ".")
json.dump({}, open(os.path.join(OUTPUT_DIR, "metrics.json"), "w"))
joblib.dump(DummyClassifier(), os.path.join(OUTPUT_DIR, "model.joblib"))
json.dump({"required": []}, open(os.path.join(OUTPUT_DIR, "input_schema.json"), "w"))
"""


async def test_llm_agents_end_to_end(server: FakeLlmServer) -> None:
    agents = LlmAgents(_build_openai(server))
    feedback = [
        Feedback(
            source="human", text="Do not use PassengerId.", step=Step.RESEARCH, at=datetime.now(UTC)
        )
    ]
    try:
        # Research: a made-up column is caught by the plan check and fed back.
        server.enqueue(
            openai_ok(json.dumps({**PLAN, "target": "survived"})), openai_ok(json.dumps(PLAN))
        )
        research = await agents.research(_context(feedback=feedback))
        assert research.plan.target == "Survived" and research.usage.input_tokens == 200
        first_user = server.requests[0].body["messages"][1]["content"]
        for needle in (
            "Predict who survived the Titanic",
            "Age | numeric | float64 | 177 | 88",
            "inferred target: Survived",
            "Do not use PassengerId.",
            "titanic.csv",
        ):
            assert needle in first_user
        assert "is not a column" in server.requests[1].body["messages"][-1]["content"]

        # Data engineering: an uninstalled import is caught and fed back; fences are stripped.
        server.reset()
        server.enqueue(
            openai_ok(json.dumps({"code": "import seaborn\n" + EDA_CODE, "summary": "eda"})),
            openai_ok(json.dumps({"code": f"```python\n{EDA_CODE}```", "summary": "eda"})),
        )
        ctx = _context(plan=ResearchPlan.model_validate(PLAN), version=3)
        eda = await agents.data_engineering(ctx)
        assert eda.code.code == EDA_CODE and eda.code.version == 3
        system = server.requests[0].body["messages"][0]["content"]
        assert "DATASET_PATH" in system and "eda_summary.json" in system
        assert "['seaborn']" in server.requests[1].body["messages"][-1]["content"]

        # ML: sees the EDA result; a syntax error is caught and fed back.
        server.reset()
        server.enqueue(
            openai_ok(json.dumps({"code": "def broken(:\n"})),
            openai_ok(json.dumps({"code": TRAIN_CODE, "summary": "dummy"})),
        )
        eda_result = ExecutionResult(
            backend="local",
            exit_code=0,
            duration_seconds=1.5,
            stdout_tail="Age has 177 missing values",
        )
        ml = await agents.ml(
            ctx.model_copy(update={"eda_code": eda.code, "eda_result": eda_result})
        )
        assert ml.code.summary == "dummy" and ml.code.version == 3
        assert "Age has 177 missing values" in server.requests[0].body["messages"][1]["content"]
        assert "metrics.json" in server.requests[0].body["messages"][0]["content"]
        assert "syntax error" in server.requests[1].body["messages"][-1]["content"]

        # Critic: sees the training code and its metrics.
        server.reset()
        review = {
            "verdict": "revise",
            "summary": "Barely beats baseline.",
            "findings": [{"severity": "warning", "category": "baseline", "message": "m"}],
        }
        server.enqueue(openai_ok(json.dumps(review)))
        training = ExecutionResult(
            backend="local",
            exit_code=0,
            duration_seconds=3,
            metrics={"score": 0.62, "baseline_score": 0.61},
        )
        outcome = await agents.critic(
            ctx.model_copy(
                update={
                    "training_code": GeneratedCode(code=TRAIN_CODE),
                    "training_result": training,
                }
            )
        )
        assert outcome.review.verdict == "revise" and outcome.usage.provider == "openai"
        user = server.requests[0].body["messages"][1]["content"]
        assert '"baseline_score": 0.61' in user and "DummyClassifier" in user
    finally:
        await agents.provider.aclose()


# --- Factory --------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_BASE_URL",
        "LLM_PROVIDER",
        "OPENAI_MODEL",
        "ANTHROPIC_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


def _settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


@pytest.mark.usefixtures("clean_env")
def test_factory_picks_provider_from_settings() -> None:
    assert build_provider(_settings()) is None
    assert build_provider(_settings(openai_api_key=SecretStr(""))) is None  # empty means unset

    both = _settings(openai_api_key=SecretStr("sk-a" * 4), anthropic_api_key=SecretStr("sk-b" * 4))
    chosen = build_provider(both)
    assert isinstance(chosen, OpenAIProvider) and chosen.model == "gpt-4o-mini"

    chosen = build_provider(_settings(anthropic_api_key=SecretStr("sk-b" * 4), anthropic_model="m"))
    assert isinstance(chosen, AnthropicProvider) and chosen.model == "m"

    chosen = build_provider(
        _settings(openai_base_url="http://localhost:11434/v1", openai_model="x")
    )
    assert isinstance(chosen, OpenAIProvider)

    explicit = both.model_copy(
        update={"llm_provider": "anthropic", "llm_max_validation_retries": 5}
    )
    chosen = build_provider(explicit)
    assert isinstance(chosen, AnthropicProvider) and chosen.max_validation_retries == 5

    assert build_provider(both.model_copy(update={"llm_provider": "offline"})) is None
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        build_provider(_settings(llm_provider="openai"))


# --- Small pieces ---------------------------------------------------------------------------------


def test_pricing() -> None:
    assert price_for("gpt-4o-mini-2024-07-18") == price_for("gpt-4o-mini") == (0.15, 0.60)
    assert price_for("claude-3-5-haiku-20241022") == price_for("claude-3-5-haiku-latest")
    assert price_for("openai/gpt-4o") == (2.50, 10.00)
    assert price_for("o3-pro") is None and price_for("llama3.1:8b") is None
    assert estimate_cost_usd("gpt-4o", 1_000_000, 1_000_000) == 12.5
    assert estimate_cost_usd("mystery", 10, 10) is None


def test_json_extraction() -> None:
    assert extract_json_object('{"a": 1}') == {"a": 1}
    assert extract_json_object('Sure:\n```json\n{"a": {"b": 2}}\n```\nDone') == {"a": {"b": 2}}
    assert extract_json_object('I think {maybe} then {"a": 1} trailing') == {"a": 1}
    for bad in ("", "no json here", "[1, 2]", '{"a": '):
        with pytest.raises(ValueError):
            extract_json_object(bad)


def test_scrubbing_and_retry_after() -> None:
    scrub = Scrubber("my-own-long-secret-key")
    text = scrub(
        "key my-own-long-secret-key, other sk-proj-abcdefghij, Bearer abc.def.ghi, api_key=xyz123"
    )
    assert "my-own" not in text and "abcdefghij" not in text and "abc.def" not in text
    assert "xyz123" not in text
    assert safe_url("https://user:pw@host:8080/v1?key=1") == "https://host:8080/v1"
    assert retry_after({"retry-after-ms": "1500"}) == timedelta(seconds=1.5)
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None  # in the past
    assert retry_after({"retry-after": "99999"}) == timedelta(hours=1)
    assert retry_after({}) is None


# A fresh process builds the worker's team and reports which LLM SDKs it loaded.
_SDKS_LOADED = (
    "import sys, worker; from activities.team import build_agents; from settings import Settings; "
    "build_agents(Settings()); print(sorted(m for m in ('anthropic', 'openai') if m in sys.modules))"
)


@pytest.mark.parametrize(
    ("provider_env", "loaded"),
    [
        ({}, "[]"),
        ({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk-test"}, "['openai']"),
        ({"LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "sk-ant-test"}, "['anthropic']"),
    ],
)
def test_a_worker_loads_only_the_llm_sdk_it_uses(
    tmp_path: Path, provider_env: dict[str, str], loaded: str
) -> None:
    """Each SDK costs every worker process tens of MB; the offline scientist needs neither."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", _SDKS_LOADED],
        cwd=Path(__file__).resolve().parent.parent,
        env={**env, **provider_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == loaded
