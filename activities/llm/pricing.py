"""Estimates what an agent call cost from list prices; None when the model is unknown.

Each provider module keeps its own models' prices and registers them here, so adding a
provider does not touch this file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# USD per million tokens: (input, output), from every provider module imported so far.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {}


def register_prices(prices: Mapping[str, tuple[float, float]]) -> None:
    """Adds a provider's list prices; a model may not be priced twice with different prices."""
    for model, price in prices.items():
        if PRICES_PER_MTOK.setdefault(model, price) != price:
            raise ValueError(f"model {model!r} is priced twice: {PRICES_PER_MTOK[model]}, {price}")


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
