"""Chooses the agents' brain: an LLM provider when one is configured, else the offline scientist."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from temporalio.exceptions import ApplicationError

from activities import offline
from activities.agents import Agents
from activities.llm import LlmAgents, build_provider
from settings import Settings
from workflows.contract import ErrorType
from workflows.models import AgentContext, CodeOutcome, LlmUsage, ResearchOutcome, ReviewOutcome

T = TypeVar("T")

OFFLINE_PROVIDER = "offline"
OFFLINE_MODEL = "offline-data-scientist"


class OfflineAgents:
    """The offline data scientist behind the same interface as the LLM agents.

    Its work (reading the dataset, writing code) is CPU-bound, so it runs in a thread to keep
    the worker's event loop free for heartbeats and other activities.
    """

    def __init__(self, tuning_seconds: float | None = None) -> None:
        # Seconds the training scripts it writes may spend tuning (TRAINING_TUNING_SECONDS).
        self.tuning_seconds = tuning_seconds

    async def _answer(self, work: Callable[[], T]) -> tuple[T, LlmUsage]:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(work)
        except ValueError as err:
            # The data cannot support what was asked (e.g. feedback dropped every feature):
            # the same input would fail again, so say so once instead of retrying.
            raise ApplicationError(
                f"The offline data scientist cannot do this step: {err}",
                type=ErrorType.AGENT_INPUT,
                non_retryable=True,
            ) from err
        latency_ms = (time.perf_counter() - started) * 1000
        usage = LlmUsage(
            provider=OFFLINE_PROVIDER, model=OFFLINE_MODEL, latency_ms=latency_ms, cost_usd=0.0
        )
        return result, usage

    async def research(self, ctx: AgentContext) -> ResearchOutcome:
        plan, usage = await self._answer(
            lambda: offline.plan_research(
                ctx.user_goal,
                ctx.dataset.profile,
                target_choice=ctx.target_choice,
                feedback=ctx.feedback,
                dataset_path=ctx.dataset.file_path,
            )
        )
        return ResearchOutcome(plan=plan, usage=usage)

    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome:
        code, usage = await self._answer(lambda: offline.write_eda_code(ctx.with_planned_target()))
        return CodeOutcome(code=code, usage=usage)

    async def ml(self, ctx: AgentContext) -> CodeOutcome:
        code, usage = await self._answer(
            lambda: offline.write_training_code(
                ctx.with_planned_target(), tuning_budget=self.tuning_seconds
            )
        )
        return CodeOutcome(code=code, usage=usage)

    async def critic(self, ctx: AgentContext) -> ReviewOutcome:
        review, usage = await self._answer(
            lambda: offline.review_training(ctx.with_planned_target())
        )
        return ReviewOutcome(review=review, usage=usage)


def build_agents(settings: Settings) -> Agents:
    provider = build_provider(settings)
    if provider is None:
        return OfflineAgents(tuning_seconds=settings.training_tuning_seconds)
    return LlmAgents(provider)
