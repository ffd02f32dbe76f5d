"""The four LLM-backed agents: a prompt, an output model and the checks a reply must pass."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field, field_validator

from activities.column_plan import TargetReading, infer_task_type, read_goal, retarget_profile
from activities.llm import prompts
from activities.llm.base import LlmProvider
from activities.script_rules import ScriptKind, required_breaches
from workflows.models import (
    MAX_CODE_CHARS,
    AgentContext,
    CodeOutcome,
    DatasetProfile,
    GeneratedCode,
    RequestOutcome,
    ResearchOutcome,
    ResearchPlan,
    Review,
    ReviewOutcome,
    Step,
)


class CodeAnswer(BaseModel):
    """A Python script and a short summary of it."""

    # Not GeneratedCode itself: the caller, not the model, owns the version number, and its
    # docstring and fields are shown to the model as the JSON schema.

    code: str = Field(
        min_length=1,
        max_length=MAX_CODE_CHARS,
        description="The complete Python script, as plain source text (no Markdown fences).",
    )
    summary: str = Field(default="", description="Two or three sentences on what the code does.")
    addressed: list[RequestOutcome] = Field(
        default_factory=list,
        description="One entry per request in the latest feedback: done or not, and why not.",
    )

    @field_validator("code", mode="before")
    @classmethod
    def _strip_fences(cls, value: object) -> object:
        # Models often wrap code in ```python fences even inside JSON; that is not an error.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("```"):
                text = text.split("\n", 1)[1] if "\n" in text else ""
                text = text.rsplit("```", 1)[0] if text.rstrip().endswith("```") else text
            return text.strip("\n") + "\n" if text.strip() else ""
        return value


class LlmAgents:
    """Research, Data Engineering, ML and Critic, each one validated LLM call."""

    def __init__(self, provider: LlmProvider) -> None:
        self.provider = provider

    async def research(self, ctx: AgentContext) -> ResearchOutcome:
        profile = ctx.dataset.profile
        reading = read_goal(ctx.user_goal, profile.columns, profile.id_columns)
        if ctx.target_choice is not None:
            # The model sees the profile of the chosen target: its task and class balance.
            profile = await asyncio.to_thread(
                retarget_profile,
                profile,
                ctx.target_choice,
                ctx.user_goal,
                ctx.dataset.file_path,
            )
            dataset = ctx.dataset.model_copy(update={"profile": profile})
            ctx = ctx.model_copy(update={"dataset": dataset})
        prompt = prompts.research_prompt(ctx, reading)
        plan, usage = await self.provider.generate(
            system=prompt.system,
            user=prompt.user,
            output_model=ResearchPlan,
            agent=Step.RESEARCH.value,
            check=lambda p: check_plan(p, profile, ctx.target_choice),
        )
        return ResearchOutcome(plan=settle_target(plan, reading, profile, ctx), usage=usage)

    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome:
        ctx = ctx.with_planned_target()  # the profile of a target the reviewer chose
        prompt = prompts.data_engineering_prompt(ctx)
        return await self._write_code(ctx, prompt, Step.DATA_ENGINEERING, "eda")

    async def ml(self, ctx: AgentContext) -> CodeOutcome:
        ctx = ctx.with_planned_target()  # the profile of a target the reviewer chose
        prompt = prompts.ml_prompt(ctx)
        return await self._write_code(ctx, prompt, Step.ML, "training")

    async def critic(self, ctx: AgentContext) -> ReviewOutcome:
        ctx = ctx.with_planned_target()  # the profile of a target the reviewer chose
        prompt = prompts.critic_prompt(ctx)
        review, usage = await self.provider.generate(
            system=prompt.system,
            user=prompt.user,
            output_model=Review,
            agent=Step.CRITIC.value,
        )
        return ReviewOutcome(review=review, usage=usage)

    async def _write_code(
        self, ctx: AgentContext, prompt: prompts.Prompt, step: Step, kind: ScriptKind
    ) -> CodeOutcome:
        """One validated call for a script that obeys the script rules of its kind."""
        answer, usage = await self.provider.generate(
            system=prompt.system,
            user=prompt.user,
            output_model=CodeAnswer,
            agent=step.value,
            check=lambda a: check_code(a.code, kind),
        )
        # Requests not done are said in the summary too, where a reviewer reads first.
        missed = [f"{o.request} (because {o.reason})" for o in answer.addressed if not o.done]
        summary = answer.summary + (" Not done: " + "; ".join(missed) + "." if missed else "")
        code = GeneratedCode(
            code=answer.code, summary=summary, version=ctx.version, addressed=answer.addressed
        )
        return CodeOutcome(code=code, usage=usage)


# --- Checks beyond the schema: each ValueError is fed back to the model to fix --------------


def check_plan(
    plan: ResearchPlan, profile: DatasetProfile, target_choice: str | None = None
) -> None:
    """The plan must name real columns, not use its target as a feature, and predict the
    column a reviewer chose."""
    columns = {c.name for c in profile.columns}
    if not columns:  # nothing to check against
        return
    problems = []
    if target_choice is not None and plan.target != target_choice:
        problems.append(f"the reviewer chose the target {target_choice!r}; plan for it")
    if plan.target not in columns:
        problems.append(f"target {plan.target!r} is not a column of the dataset")
    unknown = [c for c in [*plan.features, *plan.excluded_columns] if c not in columns]
    if unknown:
        problems.append(f"unknown columns {unknown}")
    if plan.target in plan.features:
        problems.append(f"the target {plan.target!r} is listed as a feature")
    if problems:
        raise ValueError(
            "plan: " + "; ".join(problems) + ". Use column names exactly as in the profile."
        )


def settle_target(
    plan: ResearchPlan, reading: TargetReading, profile: DatasetProfile, ctx: AgentContext
) -> ResearchPlan:
    """The plan with the target decided as the service decides it, whatever the model said.

    A reviewer's choice stands: the target is that column, never a feature. Otherwise the
    plan carries the goal's reading: its confidence and candidates, and a plan that is unsure,
    or that picks another column than the reading, asks the reviewer to choose.
    """
    if ctx.target_choice is not None:
        choice = ctx.target_choice
        column = profile.column(choice)
        task = plan.task_type
        if plan.target != choice and column is not None:
            task = infer_task_type(column, ctx.user_goal)
        return plan.model_copy(
            update={
                "target": choice,
                "task_type": task,
                "features": [f for f in plan.features if f != choice],
                "excluded_columns": [c for c in plan.excluded_columns if c != choice],
                "target_confidence": 1.0,
                "target_candidates": [],
                "needs_target_choice": False,
                "chosen_by_reviewer": True,
                "class_balance": profile.class_balance if task == "classification" else None,
            }
        )
    scores = {c.column: c.score for c in reading.candidates}
    agrees = plan.target == reading.target
    confidence = reading.confidence if agrees else min(scores.get(plan.target, 0.0), 0.5)
    candidates = [c.column for c in reading.candidates if c.column != plan.target]
    return plan.model_copy(
        update={
            "target_confidence": confidence,
            "target_candidates": candidates,
            "needs_target_choice": reading.needs_choice or not agrees,
            "chosen_by_reviewer": False,
            "class_balance": None,
        }
    )


def check_code(code: str, kind: ScriptKind) -> None:
    """Reject code that breaks a required script rule (activities/script_rules.py).

    Catching these here costs one more LLM turn; catching them after a person approved the
    code, or after a sandbox run, costs a whole round.
    """
    breaches = required_breaches(code, kind)
    if breaches:
        raise ValueError("code: " + "; ".join(b.message for b in breaches))
