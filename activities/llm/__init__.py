"""LLM-backed agents: the provider interface, the OpenAI and Anthropic providers, prompts."""

from activities.llm.agents import LlmAgents
from activities.llm.anthropic_provider import AnthropicProvider
from activities.llm.base import LlmProvider
from activities.llm.errors import (
    INVALID_MODEL_OUTPUT,
    LLM_CONFIGURATION_ERROR,
    LLM_REQUEST_REFUSED,
    LLM_TRANSIENT_ERROR,
)
from activities.llm.factory import build_provider
from activities.llm.openai_provider import OpenAIProvider

__all__ = [
    "INVALID_MODEL_OUTPUT",
    "LLM_CONFIGURATION_ERROR",
    "LLM_REQUEST_REFUSED",
    "LLM_TRANSIENT_ERROR",
    "AnthropicProvider",
    "LlmAgents",
    "LlmProvider",
    "OpenAIProvider",
    "build_provider",
]
