"""Anthropic's Messages API behind the LlmProvider interface."""

from __future__ import annotations

import logging
from typing import Any

import anthropic
from temporalio.exceptions import ApplicationError

from activities.llm.base import ChatMessage, LlmProvider, RawReply
from activities.llm.errors import (
    LLM_CONFIGURATION_ERROR,
    ProviderIdentity,
    Scrubber,
    classify_anthropic_error,
    safe_url,
)
from activities.llm.pricing import register_prices

logger = logging.getLogger("orchestrator.llm.anthropic")

# Proxies in front of Anthropic may not need a key, but the SDK insists on a credential.
PLACEHOLDER_API_KEY = "not-needed"
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"

# USD per million tokens: (input, output). Public list prices for standard (non-batch,
# uncached) usage as last checked; they change, so treat the result as an estimate. Dated
# snapshots ("claude-3-5-haiku-20241022", "-latest") share the price (activities/llm/pricing.py).
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-haiku": (0.25, 1.25),
}
register_prices(PRICES_PER_MTOK)
# The Messages API requires a cap; 8192 fits a full training script and every current model.
DEFAULT_MAX_TOKENS = 8192


class AnthropicProvider(LlmProvider):
    name = "anthropic"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        timeout_seconds: float = 120.0,
        max_validation_retries: int = 2,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        if not api_key and not base_url:
            raise ApplicationError(
                "Anthropic needs an API key: set ANTHROPIC_API_KEY",
                type=LLM_CONFIGURATION_ERROR,
                non_retryable=True,
            )
        super().__init__(
            model=model, max_validation_retries=max_validation_retries, scrubber=Scrubber(api_key)
        )
        self._who = ProviderIdentity(
            label="Anthropic",
            model=model,
            base_url=safe_url(base_url or DEFAULT_ANTHROPIC_BASE_URL),
            key_env="ANTHROPIC_API_KEY",
            model_env="ANTHROPIC_MODEL",
            base_url_env="ANTHROPIC_BASE_URL",
        )
        self._max_tokens = max_tokens
        # Retries belong to Temporal (with backoff and visibility), so the SDK's are off.
        # An explicit api_key also stops the SDK from falling back to profiles on disk.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or PLACEHOLDER_API_KEY,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=0,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def _chat(self, system: str, messages: list[ChatMessage]) -> RawReply:
        payload: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        try:
            message = await self._client.messages.create(
                model=self.model,
                system=system,
                messages=payload,
                max_tokens=self._max_tokens,
            )
        except anthropic.AnthropicError as exc:
            # `from None`: Temporal serialises the cause chain into the failure, and the SDK's
            # exception may quote the request.
            raise classify_anthropic_error(exc, self._who, self._scrubber) from None

        # Only text blocks carry the answer; thinking or tool blocks are not part of it.
        text = "".join(
            block.text for block in message.content if isinstance(block, anthropic.types.TextBlock)
        )
        usage = message.usage
        stop = message.stop_reason
        return RawReply(
            text=text,
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            truncated=stop == "max_tokens",
            refusal=(text or "the model stopped with stop_reason 'refusal'")
            if stop == "refusal"
            else None,
        )
