"""The four LLM-backed agents: a prompt, an output model and the checks a reply must pass."""

from __future__ import annotations

import ast
import sys

from pydantic import BaseModel, Field, field_validator

from activities.llm import prompts
from activities.llm.base import LlmProvider
from workflows.models import (
    MAX_CODE_CHARS,
    AgentContext,
    CodeOutcome,
    DatasetProfile,
    GeneratedCode,
    ResearchOutcome,
    ResearchPlan,
    Review,
    ReviewOutcome,
    Step,
)

EDA_OUTPUT_FILES = ("eda_summary.json",)
TRAINING_OUTPUT_FILES = ("metrics.json", "model.joblib")


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
        prompt = prompts.research_prompt(ctx)
        plan, usage = await self.provider.generate(
            system=prompt.system,
            user=prompt.user,
            output_model=ResearchPlan,
            agent=Step.RESEARCH.value,
            check=lambda p: check_plan(p, ctx.dataset.profile),
        )
        return ResearchOutcome(plan=plan, usage=usage)

    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome:
        prompt = prompts.data_engineering_prompt(ctx)
        return await self._write_code(ctx, prompt, Step.DATA_ENGINEERING, EDA_OUTPUT_FILES)

    async def ml(self, ctx: AgentContext) -> CodeOutcome:
        prompt = prompts.ml_prompt(ctx)
        return await self._write_code(ctx, prompt, Step.ML, TRAINING_OUTPUT_FILES)

    async def critic(self, ctx: AgentContext) -> ReviewOutcome:
        prompt = prompts.critic_prompt(ctx)
        review, usage = await self.provider.generate(
            system=prompt.system,
            user=prompt.user,
            output_model=Review,
            agent=Step.CRITIC.value,
        )
        return ReviewOutcome(review=review, usage=usage)

    async def _write_code(
        self, ctx: AgentContext, prompt: prompts.Prompt, step: Step, outputs: tuple[str, ...]
    ) -> CodeOutcome:
        """One validated call for a script that must write each of `outputs`."""
        answer, usage = await self.provider.generate(
            system=prompt.system,
            user=prompt.user,
            output_model=CodeAnswer,
            agent=step.value,
            check=lambda a: check_code(a.code, outputs),
        )
        code = GeneratedCode(code=answer.code, summary=answer.summary, version=ctx.version)
        return CodeOutcome(code=code, usage=usage)


# --- Checks beyond the schema: each ValueError is fed back to the model to fix --------------


def check_plan(plan: ResearchPlan, profile: DatasetProfile) -> None:
    """The plan must name real columns, and must not use its target as a feature."""
    columns = {c.name for c in profile.columns}
    if not columns:  # nothing to check against
        return
    problems = []
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


def check_code(code: str, required_outputs: tuple[str, ...]) -> None:
    """Reject code that cannot parse, imports what is not installed, or ignores the contract.

    Catching these here costs one more LLM turn; catching them after a person approved the
    code, or after a sandbox run, costs a whole round.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise ValueError(f"code: Python syntax error at line {exc.lineno}: {exc.msg}") from None
    problems = []
    missing_modules = sorted(
        {name for name in _imported_modules(tree) if not _is_allowed_module(name)}
    )
    if missing_modules:
        problems.append(
            f"it imports {missing_modules}, which are not installed (only the standard "
            f"library, {', '.join(prompts.ALLOWED_PACKAGES)} are available)"
        )
    for env_var in ("DATASET_PATH", "OUTPUT_DIR"):
        if env_var not in code:
            problems.append(f"it does not read the {env_var} environment variable")
    for name in required_outputs:
        if name not in code:
            problems.append(f"it does not write {name} into OUTPUT_DIR")
    if problems:
        raise ValueError("code: " + "; ".join(problems))


def _imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _is_allowed_module(name: str) -> bool:
    return name in sys.stdlib_module_names or name in prompts.ALLOWED_PACKAGES
