"""Adding an agent or an LLM provider touches as few files as docs/architecture.md says."""

from __future__ import annotations

import pytest

from activities.agents import AgentActivities
from activities.llm import anthropic_provider, openai_provider, pricing
from activities.team import OfflineAgents
from workflows.contract import ActivityName


def _activity_name(fn: object) -> str | None:
    definition = getattr(fn, "__temporal_activity_definition", None)
    return getattr(definition, "name", None)


def test_agent_activities_list_every_agent_activity_for_the_worker():
    agents = AgentActivities(OfflineAgents())
    declared = {
        name
        for member in vars(AgentActivities).values()
        if (name := _activity_name(member)) is not None
    }
    listed = [_activity_name(fn) for fn in agents.all()]
    # A new @activity.defn method missing from all() would never be registered by the worker.
    assert sorted(listed) == sorted(declared)  # type: ignore[type-var]
    assert set(listed) == {
        ActivityName.RESEARCH,
        ActivityName.DATA_ENGINEERING,
        ActivityName.ML,
        ActivityName.CRITIC,
    }
    assert all(getattr(fn, "__self__", None) is agents for fn in agents.all())


def test_each_provider_module_brings_its_own_prices():
    for module in (openai_provider, anthropic_provider):
        for model, price in module.PRICES_PER_MTOK.items():
            assert pricing.price_for(model) == price
    assert pricing.price_for("gpt-4o-mini") == openai_provider.PRICES_PER_MTOK["gpt-4o-mini"]
    assert (
        pricing.price_for("claude-haiku-4-5")
        == (anthropic_provider.PRICES_PER_MTOK["claude-haiku-4-5"])
    )


def test_a_model_priced_twice_differently_is_refused():
    model, price = next(iter(openai_provider.PRICES_PER_MTOK.items()))
    pricing.register_prices({model: price})  # the same price again is harmless
    with pytest.raises(ValueError, match="priced twice"):
        pricing.register_prices({model: (price[0] + 1, price[1])})
    assert pricing.price_for(model) == price
