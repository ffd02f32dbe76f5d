"""The provider interface and the one validate-and-retry loop every provider shares."""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from activities.llm import prompts
from activities.llm.errors import INVALID_MODEL_OUTPUT, LLM_REQUEST_REFUSED, Scrubber
from activities.llm.pricing import estimate_cost_usd
from activities.telemetry import llm_call_span
from workflows.models import LlmUsage

logger = logging.getLogger("orchestrator.llm")

T = TypeVar("T", bound=BaseModel)

# A check beyond the schema (e.g. "the target is a real column"); raises ValueError to reject.
OutputCheck = Callable[[T], None]

# How much of a bad reply is echoed back to the model and into errors: enough to see the
# mistake, small enough not to blow up the conversation or the Temporal failure.
_ECHO_CHARS = 2_000


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class RawReply:
    """What one provider round trip produced, before any parsing."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    # True when the model stopped at the token limit, so the JSON is likely cut short.
    truncated: bool = False
    # Set when the model declined to answer (OpenAI `refusal`, Anthropic stop_reason "refusal").
    refusal: str | None = None


class InvalidOutput(ValueError):
    """The reply was not a JSON object that validates; the text is fed back to the model."""


@dataclass
class _Attempts:
    input_tokens: int = 0
    output_tokens: int = 0
    count: int = 0
    errors: list[str] = field(default_factory=list)


class LlmProvider(ABC):
    """One configured model behind one SDK; subclasses implement only `_chat`."""

    #: Short provider id recorded in LlmUsage, e.g. "openai".
    name: str
    #: The model id sent to the API.
    model: str

    def __init__(self, *, model: str, max_validation_retries: int, scrubber: Scrubber) -> None:
        self.model = model
        self.max_validation_retries = max_validation_retries
        self._scrubber = scrubber

    @abstractmethod
    async def _chat(self, system: str, messages: list[ChatMessage]) -> RawReply:
        """Send one conversation and return the reply; raise classified ApplicationErrors."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers have a client
        """Release the SDK client's connections."""

    async def generate(
        self,
        *,
        system: str,
        user: str,
        output_model: type[T],
        agent: str = "agent",
        check: OutputCheck[T] | None = None,
    ) -> tuple[T, LlmUsage]:
        """Ask for a JSON object matching `output_model`; retry with the error fed back.

        Transport and API errors propagate from `_chat` as classified ApplicationErrors (Temporal
        retries the whole activity for transient ones). Output that does not validate is
        retried here, within the same activity attempt, because the model needs to see its own
        mistake: up to `max_validation_retries` extra turns, then InvalidModelOutput.
        """
        system_prompt = f"{system}\n\n{prompts.output_contract(output_model)}"
        messages = [ChatMessage("user", user)]
        attempts = _Attempts()
        started = time.perf_counter()
        logger.debug(
            "llm request agent=%s provider=%s model=%s system_chars=%d user_chars=%d",
            agent,
            self.name,
            self.model,
            len(system_prompt),
            len(user),
        )

        for _ in range(self.max_validation_retries + 1):
            with llm_call_span(self.name, self.model, agent) as span:
                reply = await self._chat(system_prompt, messages)
                span.set_attribute("gen_ai.usage.input_tokens", reply.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", reply.output_tokens)
            attempts.count += 1
            attempts.input_tokens += reply.input_tokens
            attempts.output_tokens += reply.output_tokens
            if reply.refusal is not None:
                raise self._refused(agent, reply.refusal, attempts, started)
            try:
                result = parse_output(reply.text, output_model, truncated=reply.truncated)
                if check is not None:
                    check(result)
            except ValueError as exc:
                # InvalidOutput, pydantic's ValidationError and the agents' checks all are.
                error = describe_invalid(exc)
                attempts.errors.append(error)
                logger.warning(
                    "llm output rejected agent=%s provider=%s model=%s attempt=%d: %s",
                    agent,
                    self.name,
                    self.model,
                    attempts.count,
                    self._scrubber(error),
                )
                messages.append(ChatMessage("assistant", reply.text[:_ECHO_CHARS] or "(empty)"))
                messages.append(ChatMessage("user", prompts.validation_feedback(error)))
                continue
            usage = self._usage(attempts, started)
            logger.info(
                "llm call ok agent=%s provider=%s model=%s attempts=%d in=%d out=%d "
                "latency_ms=%.0f cost_usd=%s",
                agent,
                self.name,
                self.model,
                attempts.count,
                usage.input_tokens,
                usage.output_tokens,
                usage.latency_ms,
                usage.cost_usd,
            )
            return result, usage

        usage = self._usage(attempts, started)
        last = self._scrubber(attempts.errors[-1])
        raise ApplicationError(
            f"{agent}: {self.name} model '{self.model}' gave no valid {output_model.__name__} "
            f"after {attempts.count} attempt(s); last validation error: {last}",
            usage.model_dump(),  # so a caller can still account for the tokens spent
            type=INVALID_MODEL_OUTPUT,
            non_retryable=True,
        )

    def _usage(self, attempts: _Attempts, started: float) -> LlmUsage:
        return LlmUsage(
            provider=self.name,
            model=self.model,
            input_tokens=attempts.input_tokens,
            output_tokens=attempts.output_tokens,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            cost_usd=estimate_cost_usd(self.model, attempts.input_tokens, attempts.output_tokens),
        )

    def _refused(
        self, agent: str, refusal: str, attempts: _Attempts, started: float
    ) -> ApplicationError:
        # A refusal is a decision about the content, not a formatting slip: asking again
        # costs tokens and rarely changes it, so a person should look at the goal instead.
        text = self._scrubber(refusal.strip() or "no reason given")[:500]
        return ApplicationError(
            f"{agent}: {self.name} model '{self.model}' declined to answer: {text}",
            self._usage(attempts, started).model_dump(),
            type=LLM_REQUEST_REFUSED,
            non_retryable=True,
        )


# --- Parsing --------------------------------------------------------------------------------------


def parse_output(text: str, output_model: type[T], *, truncated: bool = False) -> T:
    """Find the JSON object in a reply and validate it; raise InvalidOutput/ValidationError."""
    if truncated:
        raise InvalidOutput(
            "your reply was cut off at the output token limit before the JSON object was "
            "complete; answer again more concisely"
        )
    data = extract_json_object(text)
    return output_model.model_validate(data)


def extract_json_object(text: str) -> dict[str, object]:
    """Return the first JSON object in `text`, tolerating ```json fences and prose around it."""
    stripped = text.strip()
    if not stripped:
        raise InvalidOutput("the reply was empty; reply with one JSON object")
    candidates = [stripped]
    # A fenced block is the model's own statement of where the JSON is: try it first.
    fence = stripped.find("```")
    if fence != -1:
        body_start = stripped.find("\n", fence)
        body_end = stripped.find("```", fence + 3)
        if body_start != -1 and body_end > body_start:
            candidates.insert(0, stripped[body_start + 1 : body_end])
    decoder = json.JSONDecoder()
    first_error: json.JSONDecodeError | None = None
    for candidate in candidates:
        start = candidate.find("{")
        # Bounded so a reply full of braces cannot make parsing quadratic in practice.
        for _ in range(20):
            if start == -1:
                break
            try:
                value, _end = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError as exc:
                first_error = first_error or exc
            else:
                if isinstance(value, dict):
                    return value
            start = candidate.find("{", start + 1)
    if first_error is not None:
        raise InvalidOutput(f"the reply is not valid JSON: {first_error}")
    raise InvalidOutput("the reply contains no JSON object; reply with one JSON object")


def describe_invalid(exc: Exception) -> str:
    """A compact, model-readable account of why a reply was rejected."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False)[:10]:
            where = ".".join(str(p) for p in err["loc"]) or "(root)"
            parts.append(f"{where}: {err['msg']}")
        more = f" (+{exc.error_count() - 10} more)" if exc.error_count() > 10 else ""
        return "schema validation failed: " + "; ".join(parts) + more
    return str(exc)
