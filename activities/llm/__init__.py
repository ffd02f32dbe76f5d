"""LLM-backed agents: the provider interface, the OpenAI and Anthropic providers, prompts.

The providers live in `activities.llm.openai_provider` and `activities.llm.anthropic_provider`,
imported only where used: each loads its SDK, which an offline worker never needs.
"""

from activities.llm.agents import LlmAgents
from activities.llm.base import LlmProvider
from activities.llm.errors import (
    INVALID_MODEL_OUTPUT,
    LLM_CONFIGURATION_ERROR,
    LLM_REQUEST_REFUSED,
    LLM_TRANSIENT_ERROR,
)
from activities.llm.factory import build_provider

__all__ = [
    "INVALID_MODEL_OUTPUT",
    "LLM_CONFIGURATION_ERROR",
    "LLM_REQUEST_REFUSED",
    "LLM_TRANSIENT_ERROR",
    "LlmAgents",
    "LlmProvider",
    "build_provider",
]
