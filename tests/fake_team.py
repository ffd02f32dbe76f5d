"""Scriptable stand-ins for the activities, registered under the real activity names.

Workflow-logic tests drive the real workflow on the time-skipping server with these, so each
test controls what the agents and executors return without touching data or models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.contract import ActivityName, ErrorType
from workflows.models import (
    AgentContext,
    CodeOutcome,
    ColumnProfile,
    DatasetInfo,
    DatasetProfile,
    DatasetRequest,
    ExecutionRequest,
    ExecutionResult,
    Finding,
    GeneratedCode,
    LlmUsage,
    ResearchOutcome,
    ResearchPlan,
    Review,
    ReviewOutcome,
    RunEvent,
)

USAGE = LlmUsage(provider="fake", model="fake-1", input_tokens=10, output_tokens=5, cost_usd=0.001)


@dataclass
class FakeTeam:
    research_failures: int = 0  # retryable failures before research succeeds
    research_fatal: bool = False
    verdicts: list[str] = field(default_factory=lambda: ["accept"])
    scores: list[float] = field(default_factory=lambda: [0.9])
    training_fails_from: int | None = None  # the training call from which a limit is exceeded
    unsure_target: bool = False  # research says it cannot tell which column to predict
    eda_exit_code: int = 0
    training_exit_code: int = 0  # the generated training script's exit code, every round
    calls: dict[str, int] = field(default_factory=dict)
    contexts: dict[str, list[AgentContext]] = field(default_factory=dict)
    events: list[RunEvent] = field(default_factory=list)  # webhook events the run sent

    def _count(self, name: str, ctx: AgentContext | None = None) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        if ctx is not None:
            self.contexts.setdefault(name, []).append(ctx)
        return self.calls[name]

    @activity.defn(name=ActivityName.FETCH_DATASET)
    async def fetch_dataset(self, request: DatasetRequest) -> DatasetInfo:
        self._count("fetch_dataset")
        profile = DatasetProfile(
            rows=3,
            columns=[
                ColumnProfile(name="Churn", kind="categorical", dtype="object", unique=2),
                ColumnProfile(name="Contract", kind="categorical", dtype="object", unique=3),
            ],
            target="Churn",
            task_type="classification",
        )
        return DatasetInfo(
            source_url=request.dataset_url,
            file_path=f"/data/{request.workflow_id}/dataset.csv",
            size_bytes=10,
            sha256="0" * 64,
            profile=profile,
        )

    @activity.defn(name=ActivityName.RESEARCH)
    async def research(self, ctx: AgentContext) -> ResearchOutcome:
        attempt = self._count("research", ctx)
        if self.research_fatal:
            raise ApplicationError(
                "OpenAI rejected the API key (401): check OPENAI_API_KEY",
                USAGE.model_dump(),  # what the failed call still cost, as the providers report it
                type=ErrorType.LLM_CONFIGURATION,
            )
        if attempt <= self.research_failures:
            raise ApplicationError(
                "rate limited",
                type=ErrorType.LLM_TRANSIENT,
                next_retry_delay=timedelta(milliseconds=10),
            )
        plan = ResearchPlan(
            steps=["profile", "clean", "model", "evaluate", "report"],
            target=ctx.target_choice or "Churn",
            task_type="classification",
            target_candidates=["Contract"] if self.unsure_target else [],
            needs_target_choice=self.unsure_target and ctx.target_choice is None,
            chosen_by_reviewer=ctx.target_choice is not None,
        )
        return ResearchOutcome(plan=plan, usage=USAGE)

    @activity.defn(name=ActivityName.DATA_ENGINEERING)
    async def data_engineering(self, ctx: AgentContext) -> CodeOutcome:
        self._count("data_engineering", ctx)
        return CodeOutcome(code=GeneratedCode(code="print('eda')", summary="EDA"), usage=USAGE)

    @activity.defn(name=ActivityName.EXECUTE_EDA)
    async def execute_eda(self, request: ExecutionRequest) -> ExecutionResult:
        self._count("execute_eda")
        return ExecutionResult(
            backend="local",
            exit_code=self.eda_exit_code,
            duration_seconds=0.1,
            stdout_tail="ok",
            stderr_tail="" if self.eda_exit_code == 0 else "KeyError: 'gender'",
        )

    @activity.defn(name=ActivityName.ML)
    async def ml(self, ctx: AgentContext) -> CodeOutcome:
        self._count("ml", ctx)
        return CodeOutcome(code=GeneratedCode(code="print('train')", summary="train"), usage=USAGE)

    @activity.defn(name=ActivityName.TRAIN_MODEL)
    async def train_model(self, request: ExecutionRequest) -> ExecutionResult:
        call = self._count("train_model")
        if self.training_fails_from is not None and call >= self.training_fails_from:
            raise ApplicationError(
                "the code exceeded the 2048 MB memory limit", type=ErrorType.EXECUTION_LIMIT
            )
        score = self.scores[min(call, len(self.scores)) - 1]
        if self.training_exit_code:
            return ExecutionResult(
                backend="local",
                exit_code=self.training_exit_code,
                duration_seconds=0.1,
                stderr_tail="Traceback...\nValueError: Input contains NaN",
            )
        return ExecutionResult(
            backend="local",
            exit_code=0,
            duration_seconds=0.1,
            metrics={"score": score, "baseline_score": 0.5, "version": request.version},
        )

    @activity.defn(name=ActivityName.CRITIC)
    async def critic(self, ctx: AgentContext) -> ReviewOutcome:
        call = self._count("critic", ctx)
        verdict = self.verdicts[min(call, len(self.verdicts)) - 1]
        findings = (
            []
            if verdict == "accept"
            else [Finding(severity="error", category="imbalance", message="use class_weight")]
        )
        return ReviewOutcome(
            review=Review(verdict=verdict, summary=f"verdict {verdict}", findings=findings),  # type: ignore[arg-type]
            usage=USAGE,
        )

    @activity.defn(name=ActivityName.NOTIFY)
    async def notify(self, event: RunEvent) -> list[str]:
        self._count("notify")
        self.events.append(event)
        return ["http://receiver.test"]

    @property
    def activities(self) -> list[object]:
        return [
            self.fetch_dataset,
            self.research,
            self.data_engineering,
            self.execute_eda,
            self.ml,
            self.train_model,
            self.critic,
            self.notify,
        ]
