"""The four agent activities; which brain answers them (an LLM or the offline one) is wiring."""

from __future__ import annotations

from typing import Protocol

from temporalio import activity

from workflows.contract import ActivityName
from workflows.models import AgentContext, CodeOutcome, ResearchOutcome, ReviewOutcome


class Agents(Protocol):
    """A data-science team: each method turns the run's context into a typed result."""

    async def research(self, ctx: AgentContext) -> ResearchOutcome: ...
    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome: ...
    async def ml(self, ctx: AgentContext) -> CodeOutcome: ...
    async def critic(self, ctx: AgentContext) -> ReviewOutcome: ...


class AgentActivities:
    def __init__(self, agents: Agents) -> None:
        self.agents = agents

    @activity.defn(name=ActivityName.RESEARCH)
    async def research(self, ctx: AgentContext) -> ResearchOutcome:
        return await self.agents.research(ctx)

    @activity.defn(name=ActivityName.DATA_ENGINEERING)
    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome:
        return await self.agents.data_engineering(ctx)

    @activity.defn(name=ActivityName.ML)
    async def ml(self, ctx: AgentContext) -> CodeOutcome:
        return await self.agents.ml(ctx)

    @activity.defn(name=ActivityName.CRITIC)
    async def critic(self, ctx: AgentContext) -> ReviewOutcome:
        return await self.agents.critic(ctx)
