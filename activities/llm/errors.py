"""Turns SDK failures into Temporal ApplicationErrors: retryable or actionable, never secret."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from temporalio.exceptions import ApplicationError

from workflows.contract import ErrorType

if TYPE_CHECKING:  # each SDK is loaded by its provider only: an offline worker loads neither
    import anthropic
    import openai

logger = logging.getLogger("orchestrator.llm.errors")

# ApplicationError types, defined once in the contract the workflow's retry policy reads.
LLM_TRANSIENT_ERROR = ErrorType.LLM_TRANSIENT.value
LLM_CONFIGURATION_ERROR = ErrorType.LLM_CONFIGURATION.value
LLM_REQUEST_REFUSED = ErrorType.LLM_REQUEST_REFUSED.value
INVALID_MODEL_OUTPUT = ErrorType.INVALID_MODEL_OUTPUT.value

# A server asking for hours is more likely misconfigured than right; Temporal's own backoff
# takes over above this.
_MAX_RETRY_AFTER = timedelta(hours=1)
_DETAIL_CHARS = 300

# Things that look like credentials even when they are not our key (a proxy may echo another).
_SECRET_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-*.]{6,}"),  # OpenAI and Anthropic keys (sk-, sk-proj-, sk-ant-)
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9_\-.=:+/]{6,}"),
    re.compile(r"(?i)(api[_-]?key|x-api-key|authorization)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
]


class Scrubber:
    """Removes a known secret, and anything shaped like one, from text bound for the outside."""

    def __init__(self, *secrets: str | None) -> None:
        # Short placeholders ("not-needed") are not secrets and would mangle ordinary words.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        text = _SECRET_PATTERNS[0].sub("[redacted]", text)
        text = _SECRET_PATTERNS[1].sub("Bearer [redacted]", text)
        return _SECRET_PATTERNS[2].sub(r"\1\2[redacted]", text)


def safe_url(url: str | None) -> str:
    """The URL without user:password and query, which can carry credentials."""
    if not url:
        return "(default endpoint)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class ProviderIdentity:
    """What an error message needs to tell a person which setting to change."""

    label: str  # "OpenAI"
    model: str
    base_url: str  # already made safe for display
    key_env: str  # "OPENAI_API_KEY"
    model_env: str  # "OPENAI_MODEL"
    base_url_env: str  # "OPENAI_BASE_URL"


# --- SDK adapters: pull status, headers and the API's message out of each SDK's exceptions ----


def classify_openai_error(
    exc: openai.OpenAIError, who: ProviderIdentity, scrub: Scrubber
) -> ApplicationError:
    import openai

    if isinstance(exc, openai.APIStatusError):
        code = exc.code or _body_field(exc.body, "code") or _body_field(exc.body, "type")
        return classify_status(
            exc.status_code,
            headers=exc.response.headers,
            detail=_api_message(exc.body, exc.message),
            code=code,
            who=who,
            scrub=scrub,
        )
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return _transient_network(who, timed_out=isinstance(exc, openai.APITimeoutError))
    return _unexpected(exc, who, scrub)


def classify_anthropic_error(
    exc: anthropic.AnthropicError, who: ProviderIdentity, scrub: Scrubber
) -> ApplicationError:
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        return classify_status(
            exc.status_code,
            headers=exc.response.headers,
            detail=exc.api_message or _api_message(exc.body, exc.message),
            code=exc.error_code or (str(exc.type) if exc.type else None),
            who=who,
            scrub=scrub,
        )
    if isinstance(exc, anthropic.APIConnectionError):  # includes APITimeoutError
        return _transient_network(who, timed_out=isinstance(exc, anthropic.APITimeoutError))
    return _unexpected(exc, who, scrub)


# --- The one mapping from HTTP status to what Temporal should do ------------------------------


def classify_status(
    status: int,
    *,
    headers: Any,
    detail: str,
    code: str | None,
    who: ProviderIdentity,
    scrub: Scrubber,
) -> ApplicationError:
    """Map an HTTP failure to a retryable or an actionable non-retryable ApplicationError."""
    detail = scrub(" ".join(detail.split()))[:_DETAIL_CHARS]
    said = f" The server said: {detail}" if detail else ""
    where = f"{who.label} at {who.base_url}"

    # OpenAI answers 429 both for "slow down" and for "out of credit"; only the first passes.
    if status == 429 and code in {"insufficient_quota", "billing_hard_limit_reached"}:
        return _permanent(
            f"{where} reports the account is out of quota (429 {code}): add credit or use "
            f"another key in {who.key_env}.{said}",
            LLM_CONFIGURATION_ERROR,
        )
    if status in (408, 409, 425, 429) or status >= 500:
        delay = retry_after(headers)
        kind = "rate-limited the request" if status == 429 else "failed transiently"
        if status == 529:
            kind = "is overloaded"
        logger.warning(
            "llm transient error provider=%s model=%s status=%d retry_after=%s",
            who.label,
            who.model,
            status,
            delay,
        )
        return ApplicationError(
            f"{where} {kind} ({status}) for model '{who.model}'; Temporal will retry.{said}",
            type=LLM_TRANSIENT_ERROR,
            non_retryable=False,
            next_retry_delay=delay,
        )
    if status == 401:
        return _permanent(
            f"{who.label} rejected the API key (401): check {who.key_env}.{said}",
            LLM_CONFIGURATION_ERROR,
        )
    if status == 402:
        return _permanent(
            f"{where} requires payment (402): check the billing of the key in {who.key_env}.{said}",
            LLM_CONFIGURATION_ERROR,
        )
    if status == 403:
        return _permanent(
            f"{who.label} denied access to model '{who.model}' (403): check that the key in "
            f"{who.key_env} may use it, or choose another with {who.model_env}.{said}",
            LLM_CONFIGURATION_ERROR,
        )
    if status == 404:
        return _permanent(
            f"model '{who.model}' not found at {who.base_url} (404): set {who.model_env} to a "
            f"model that server serves, and check {who.base_url_env}.{said}",
            LLM_CONFIGURATION_ERROR,
        )
    # 400, 413, 422 and the rest of 4xx: the server will not take this request as it is.
    return _permanent(
        f"{where} refused the request for model '{who.model}' ({status}).{said}",
        LLM_REQUEST_REFUSED,
    )


def retry_after(headers: Any) -> timedelta | None:
    """Parse `retry-after-ms` / `Retry-After` (seconds or an HTTP date) into a delay."""
    if headers is None:
        return None
    seconds: float | None = None
    raw_ms = headers.get("retry-after-ms")
    raw = headers.get("retry-after")
    try:
        if raw_ms is not None:
            seconds = float(raw_ms) / 1000
        elif raw is not None:
            seconds = float(raw)
    except ValueError:
        seconds = None
    if seconds is None and raw:
        try:
            seconds = parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds is None or seconds <= 0:
        return None
    return min(timedelta(seconds=seconds), _MAX_RETRY_AFTER)


def _permanent(message: str, error_type: str) -> ApplicationError:
    logger.error("llm request failed permanently: %s", message)
    return ApplicationError(message, type=error_type, non_retryable=True)


def _transient_network(who: ProviderIdentity, *, timed_out: bool) -> ApplicationError:
    what = "timed out" if timed_out else "could not be reached"
    logger.warning("llm %s provider=%s model=%s", what, who.label, who.model)
    return ApplicationError(
        f"{who.label} at {who.base_url} {what} for model '{who.model}'; Temporal will retry.",
        type=LLM_TRANSIENT_ERROR,
        non_retryable=False,
    )


def _unexpected(exc: Exception, who: ProviderIdentity, scrub: Scrubber) -> ApplicationError:
    # An SDK error outside the HTTP taxonomy (bad client setup, undecodable body): retrying
    # the same configuration will not help, and the type name tells a person where to look.
    text = scrub(str(exc))[:_DETAIL_CHARS]
    return _permanent(
        f"{who.label} client error for model '{who.model}' ({type(exc).__name__}): {text}",
        LLM_CONFIGURATION_ERROR,
    )


def _body_field(body: object, name: str) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get(name), str):
            return str(inner[name])
    return None


def _api_message(body: object, fallback: str) -> str:
    # The SDKs' own message embeds the whole body repr; the API's message alone reads better.
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    if isinstance(body, str):
        return body
    return fallback
