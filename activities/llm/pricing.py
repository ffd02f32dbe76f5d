"""List prices per model, to estimate what an agent call cost; None when the model is unknown."""

from __future__ import annotations

import re

# USD per million tokens: (input, output). Public list prices for standard (non-batch,
# uncached) usage as last checked; they change, so treat the result as an estimate. Dated
# snapshots ("gpt-4o-mini-2024-07-18", "claude-3-5-haiku-20241022", "-latest") share the price.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    # OpenAI
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
    # Anthropic
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

_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")


def price_for(model: str) -> tuple[float, float] | None:
    """The (input, output) price per million tokens for `model`, or None if not listed."""
    # Routers name models "openai/gpt-4o"; the part after the last slash is the model.
    name = model.strip().lower().rsplit("/", 1)[-1]
    if name in PRICES_PER_MTOK:
        return PRICES_PER_MTOK[name]
    # Only a snapshot suffix (a date or "latest") keeps the listed price: "o3-pro" or
    # "gpt-4o-audio-preview" are different products with different prices, so they stay unknown.
    base = _SNAPSHOT_SUFFIX.sub("", name)
    return PRICES_PER_MTOK.get(base)


def estimate_cost_usd(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """Estimated USD cost of the tokens at list price; None when the price is unknown."""
    price = price_for(model)
    if price is None:
        return None
    cost = (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
    return round(cost, 6)
