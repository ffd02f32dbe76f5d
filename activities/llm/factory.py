"""Builds the configured LLM provider from Settings, or None when the run should be offline."""

from __future__ import annotations

import logging

from pydantic import SecretStr

from activities.llm.base import LlmProvider
from activities.llm.errors import safe_url
from settings import Settings

logger = logging.getLogger("orchestrator.llm.factory")


def build_provider(settings: Settings) -> LlmProvider | None:
    """The provider `settings.llm_provider` asks for; None means use the offline agents.

    "auto" picks OpenAI when its key (or a compatible server's base URL) is set, else
    Anthropic when its key (or base URL) is set, else offline. Naming a provider explicitly
    without its credentials is a configuration mistake and fails loudly at startup.
    """
    choice = settings.llm_provider
    openai_key = _secret(settings.openai_api_key)
    anthropic_key = _secret(settings.anthropic_api_key)
    openai_ready = bool(openai_key or settings.openai_base_url)
    anthropic_ready = bool(anthropic_key or settings.anthropic_base_url)

    if choice == "auto":
        choice = "openai" if openai_ready else "anthropic" if anthropic_ready else "offline"

    if choice == "offline":
        logger.info("llm provider: offline (no LLM configured)")
        return None
    if choice == "openai":
        if not openai_ready:
            raise ValueError("LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL")
        logger.info(
            "llm provider: openai model=%s base_url=%s",
            settings.openai_model,
            safe_url(settings.openai_base_url),
        )
        # Imported here, so an offline worker never loads either SDK (about 64 MB of RSS
        # between them).
        from activities.llm.openai_provider import OpenAIProvider

        return OpenAIProvider(
            model=settings.openai_model,
            api_key=openai_key,
            base_url=settings.openai_base_url or None,
            timeout_seconds=settings.llm_timeout_seconds,
            max_validation_retries=settings.llm_max_validation_retries,
        )
    if not anthropic_ready:
        raise ValueError("LLM_PROVIDER=anthropic needs ANTHROPIC_API_KEY")
    logger.info(
        "llm provider: anthropic model=%s base_url=%s",
        settings.anthropic_model,
        safe_url(settings.anthropic_base_url),
    )
    from activities.llm.anthropic_provider import AnthropicProvider

    return AnthropicProvider(
        model=settings.anthropic_model,
        api_key=anthropic_key,
        base_url=settings.anthropic_base_url or None,
        timeout_seconds=settings.llm_timeout_seconds,
        max_validation_retries=settings.llm_max_validation_retries,
    )


def _secret(value: SecretStr | None) -> str | None:
    # An empty variable in .env ("OPENAI_API_KEY=") means unset, not an empty key.
    raw = value.get_secret_value().strip() if value is not None else ""
    return raw or None
