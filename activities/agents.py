"""The four agent activities; which brain answers them (an LLM or the offline one) is wiring."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from temporalio import activity

from activities.artifacts import ArtifactStore
from activities.heartbeats import run_with_heartbeats
from activities.run_report import write_run_report
from workflows.contract import ActivityName
from workflows.models import (
    AgentContext,
    CodeOutcome,
    ResearchOutcome,
    ReviewOutcome,
    Step,
)

CODE_FILE = "code.py"
ADDRESSED_FILE = "addressed.json"  # beside code.py: the RequestOutcome list of that version


class Agents(Protocol):
    """A data-science team: each method turns the run's context into a typed result."""

    async def research(self, ctx: AgentContext) -> ResearchOutcome: ...
    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome: ...
    async def ml(self, ctx: AgentContext) -> CodeOutcome: ...
    async def critic(self, ctx: AgentContext) -> ReviewOutcome: ...


class AgentActivities:
    def __init__(self, agents: Agents, store: ArtifactStore | None = None) -> None:
        self.agents = agents
        self.store = store

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        """Every agent activity, bound to these agents. The worker registers this list, so a
        new agent is a method here (and its brains), not also a line in worker.py."""
        return [self.research, self.data_engineering, self.ml, self.critic]

    @activity.defn(name=ActivityName.RESEARCH)
    async def research(self, ctx: AgentContext) -> ResearchOutcome:
        # Heartbeats while the model thinks: a worker lost mid-call is replaced in seconds.
        return await run_with_heartbeats(self.agents.research(ctx))

    @activity.defn(name=ActivityName.DATA_ENGINEERING)
    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome:
        outcome = await run_with_heartbeats(self.agents.data_engineering(ctx))
        await self._keep_code(ctx, Step.DATA_ENGINEERING, outcome)
        return outcome

    @activity.defn(name=ActivityName.ML)
    async def ml(self, ctx: AgentContext) -> CodeOutcome:
        outcome = await run_with_heartbeats(self.agents.ml(ctx))
        await self._keep_code(ctx, Step.ML, outcome)
        return outcome

    @activity.defn(name=ActivityName.CRITIC)
    async def critic(self, ctx: AgentContext) -> ReviewOutcome:
        outcome = await run_with_heartbeats(self.agents.critic(ctx))
        if self.store is not None:  # the round's HTML report, now that it has its review
            await asyncio.to_thread(write_run_report, self.store, ctx, outcome.review)
        return outcome

    async def _keep_code(self, ctx: AgentContext, step: Step, outcome: CodeOutcome) -> None:
        """Every generated version stays downloadable, including ones a human rejected, with
        what it did about each request (the state keeps only the latest version's)."""
        if self.store is not None:
            await asyncio.to_thread(
                self.store.write_text, ctx.workflow_id, step.value, ctx.version, CODE_FILE,
                outcome.code.code,
            )  # fmt: skip
            addressed = json.dumps([item.model_dump() for item in outcome.code.addressed])
            await asyncio.to_thread(
                self.store.write_text, ctx.workflow_id, step.value, ctx.version, ADDRESSED_FILE,
                addressed,
            )  # fmt: skip
