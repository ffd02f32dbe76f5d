"""OpenAI Chat Completions (and any OpenAI-compatible server) behind the LlmProvider interface."""

from __future__ import annotations

import logging
from typing import Any

import openai
from temporalio.exceptions import ApplicationError

from activities.llm.base import ChatMessage, LlmProvider, RawReply
from activities.llm.errors import (
    LLM_CONFIGURATION_ERROR,
    ProviderIdentity,
    Scrubber,
    classify_openai_error,
    safe_url,
)
from activities.llm.pricing import register_prices

logger = logging.getLogger("orchestrator.llm.openai")

# Local servers (Ollama, vLLM) ignore the key, but the SDK insists on one.
PLACEHOLDER_API_KEY = "not-needed"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"

# USD per million tokens: (input, output). Public list prices for standard (non-batch,
# uncached) usage as last checked; they change, so treat the result as an estimate. Dated
# snapshots ("gpt-4o-mini-2024-07-18") share the price (activities/llm/pricing.py).
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}
register_prices(PRICES_PER_MTOK)


class OpenAIProvider(LlmProvider):
    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        timeout_seconds: float = 120.0,
        max_validation_retries: int = 2,
    ) -> None:
        if not api_key and not base_url:
            raise ApplicationError(
                "OpenAI needs an API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
                "OpenAI-compatible server)",
                type=LLM_CONFIGURATION_ERROR,
                non_retryable=True,
            )
        super().__init__(
            model=model, max_validation_retries=max_validation_retries, scrubber=Scrubber(api_key)
        )
        self._who = ProviderIdentity(
            label="OpenAI",
            model=model,
            base_url=safe_url(base_url or DEFAULT_OPENAI_BASE_URL),
            key_env="OPENAI_API_KEY",
            model_env="OPENAI_MODEL",
            base_url_env="OPENAI_BASE_URL",
        )
        # Retries belong to Temporal (with backoff and visibility), so the SDK's are off.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or PLACEHOLDER_API_KEY,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=0,
        )
        # JSON mode is on until a server says it does not support it (some compatible servers
        # reject `response_format: json_object`); the prompt asks for JSON either way.
        self._json_mode = True

    async def aclose(self) -> None:
        await self._client.close()

    async def _chat(self, system: str, messages: list[ChatMessage]) -> RawReply:
        payload: list[Any] = [{"role": "system", "content": system}]
        payload += [{"role": m.role, "content": m.content} for m in messages]
        try:
            completion = await self._create(payload)
        except openai.BadRequestError as exc:
            if not (self._json_mode and "response_format" in str(exc.message)):
                raise classify_openai_error(exc, self._who, self._scrubber) from None
            logger.warning(
                "server at %s rejected JSON mode; continuing with prompt-only JSON",
                self._who.base_url,
            )
            self._json_mode = False
            try:
                completion = await self._create(payload)
            except openai.OpenAIError as retry_exc:
                raise classify_openai_error(retry_exc, self._who, self._scrubber) from None
        except openai.OpenAIError as exc:
            # `from None`: Temporal serialises the cause chain into the failure, and the SDK's
            # exception may quote the key or the request.
            raise classify_openai_error(exc, self._who, self._scrubber) from None

        input_tokens, output_tokens = _usage(completion)
        if not completion.choices:
            return RawReply(text="", input_tokens=input_tokens, output_tokens=output_tokens)
        choice = completion.choices[0]
        message = choice.message
        # `or None`: some compatible servers send "refusal": "" on ordinary answers.
        refusal = getattr(message, "refusal", None) or None
        if refusal is None and choice.finish_reason == "content_filter":
            refusal = "the response was blocked by the content filter"
        return RawReply(
            text=message.content or "",
            truncated=choice.finish_reason == "length",
            refusal=refusal,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    async def _create(self, payload: list[Any]) -> Any:
        extra: dict[str, Any] = {}
        if self._json_mode:
            extra["response_format"] = {"type": "json_object"}
        # No max_tokens / temperature: reasoning models reject them, and the defaults suit
        # generating a full script.
        return await self._client.chat.completions.create(
            model=self.model, messages=payload, **extra
        )


def _usage(completion: Any) -> tuple[int, int]:
    usage = getattr(completion, "usage", None)
    if usage is None:  # some compatible servers omit usage
        return 0, 0
    return int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
