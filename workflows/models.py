"""Data shapes shared by the workflow, the activities and the API: one definition of each.

Everything here crosses Temporal's payload boundary through the pydantic data converter, so
it stays small: generated code (bounded) and summaries travel, files travel as references.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

# Generated code is kept in the run's state so the spec's `code_context` shows it; this bound
# keeps one version far below Temporal's 2 MB payload limit.
MAX_CODE_CHARS = 100_000


class RunStatus(StrEnum):
    STARTED = "started"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)


class Step(StrEnum):
    """The run's steps, named as the spec names its graph nodes."""

    DATASET_INTAKE = "dataset_intake"
    RESEARCH = "research_agent"
    DATA_ENGINEERING = "data_engineering_agent"
    HUMAN_APPROVAL = "human_approval"
    BROWSER_AGENT = "browser_agent"  # executes the approved EDA code
    ML = "ml_agent"
    ML_WORKER = "ml_worker"  # runs the training code
    CRITIC = "critic_agent"
    COMPLETE = "complete"


class HumanApproval(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


TaskType = Literal["classification", "regression"]


# --- Inputs -----------------------------------------------------------------------------------


class RunOptions(BaseModel):
    """Per-run limits; defaults come from settings when the API starts the run."""

    approval_timeout_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    max_rejections: int = Field(default=5, ge=0)
    max_critic_rounds: int = Field(default=2, ge=0)
    # Tell WEBHOOK_URLS when the run awaits approval or ends; the API sets it when any are set.
    notify: bool = False


class RunInput(BaseModel):
    user_goal: str
    dataset_url: str  # may carry credentials: only intake sees it; the state keeps it redacted
    options: RunOptions = Field(default_factory=RunOptions)
    owner: str | None = None  # the principal who started the run (None: started outside the API)
    owner_authenticated: bool = False


# --- Decisions and the audit trail ------------------------------------------------------------


class Decision(BaseModel):
    """The argument of the approve/reject updates (and, loosely, of the CLI signals)."""

    by: str | None = None
    # True only when the API authenticated `by`; a name typed into the CLI is recorded as given.
    authenticated: bool = False
    version: int | None = Field(default=None, ge=1)  # the EDA version reviewed
    feedback: str | None = Field(default=None, max_length=4000)
    # The column the reviewer wants predicted; a new target re-plans the run before any code runs.
    target: str | None = Field(default=None, min_length=1, max_length=500)
    # Past this instant (the API's clock) the decision no longer counts: an API that gave up
    # waiting for a worker told its caller so, and a late delivery must not take effect.
    expires_at: datetime | None = None


class AuditEntry(BaseModel):
    action: Literal["started", "approved", "rejected", "retargeted", "cancelled"]
    by: str | None = None
    authenticated: bool = False
    via: Literal["api", "update", "signal", "temporal"]
    at: datetime
    version: int | None = None
    feedback: str | None = None


# --- Dataset ----------------------------------------------------------------------------------


class ColumnProfile(BaseModel):
    name: str
    kind: Literal["numeric", "categorical", "boolean", "datetime", "text"]
    dtype: str
    missing: int = 0
    unique: int = 0
    sample_values: list[str] = Field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


class OtherColumns(BaseModel):
    """The columns an agent's profile does not describe one by one: counts and a few names."""

    count: int
    kinds: dict[str, int] = Field(default_factory=dict)  # kind -> how many
    with_missing: int = 0  # how many have missing values
    names: list[str] = Field(default_factory=list)  # the first few, clipped


class DatasetProfile(BaseModel):
    rows: int
    columns: list[ColumnProfile]
    # Profiles are of the whole file now; True only in profiles recorded before that.
    sampled: bool = False
    target: str | None = None
    task_type: TaskType | None = None
    id_columns: list[str] = Field(default_factory=list)
    class_balance: dict[str, int] | None = None
    # Set when the table has more rows than TRAINING_SAMPLE_ROWS: training reads a sample of
    # this many rows (stratified by the target for a classification).
    training_sample_rows: int | None = None
    # Set in the profile agents see when the table has more columns than they are shown.
    other_columns: OtherColumns | None = None
    # The CSV dialect profiling found, decided once here and handed to every script that reads
    # the file (ignored for Parquet). Defaults keep histories recorded before this readable.
    delimiter: str = ","
    encoding: str = "utf-8"

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)

    def for_plan(self, plan: ResearchPlan) -> DatasetProfile:
        """This profile as if intake had chosen the plan's target: its task and class balance.

        After a reviewer changes the target, every later agent reads the profile; its target
        and balance must be the new target's, or class weighting would be judged for the old.
        """
        if plan.target == self.target or self.column(plan.target) is None:
            return self
        return self.model_copy(
            update={
                "target": plan.target,
                "task_type": plan.task_type,
                "class_balance": plan.class_balance,
                "id_columns": [c for c in self.id_columns if c != plan.target],
            }
        )


class DatasetInfo(BaseModel):
    source_url: str
    file_path: str  # where the worker stored the file; the data never enters history
    size_bytes: int
    sha256: str
    profile: DatasetProfile
    # The file's key in storage (activities/storage.py), which every worker can read; None in
    # results recorded before object storage.
    storage_key: str | None = None


# --- Agent results ----------------------------------------------------------------------------


class LlmUsage(BaseModel):
    """Who answered one agent call and what it cost."""

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float | None = None


class UsageTotals(BaseModel):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, usage: LlmUsage) -> UsageTotals:
        return UsageTotals(
            calls=self.calls + 1,
            input_tokens=self.input_tokens + usage.input_tokens,
            output_tokens=self.output_tokens + usage.output_tokens,
            cost_usd=round(self.cost_usd + (usage.cost_usd or 0.0), 6),
        )


class ResearchPlan(BaseModel):
    steps: list[str] = Field(min_length=1)
    target: str
    task_type: TaskType
    features: list[str] = Field(default_factory=list)
    excluded_columns: list[str] = Field(default_factory=list)
    rationale: str = ""
    # How sure the research agent is that `target` is what the goal asks for (0..1), and the
    # columns that came close. When unsure, the reviewer must choose the target at approval.
    target_confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    target_candidates: list[str] = Field(default_factory=list)
    needs_target_choice: bool = False
    chosen_by_reviewer: bool = False
    # Rows per class of a target the reviewer chose, counted by research over the whole file
    # (the profile's own balance describes intake's target); None for a regression.
    class_balance: dict[str, int] | None = None


class RequestOutcome(BaseModel):
    """What became of one thing a reviewer or the critic asked for in this version."""

    request: str  # the ask, in the asker's words ("show me a correlation heatmap")
    done: bool
    reason: str = ""  # why not, when not done


class GeneratedCode(BaseModel):
    code: str = Field(max_length=MAX_CODE_CHARS)
    summary: str = ""
    version: int = 1
    # Which feedback this version addressed and which it could not; never dropped silently.
    addressed: list[RequestOutcome] = Field(default_factory=list)


# What a finding asks the next version to do; agents act on this, the message is for people.
FindingAction = Literal[
    "drop_columns",  # leave `columns` out of the features
    "investigate_leakage",  # `columns` (or the strongest feature) may encode the answer
    "change_target",  # predict `columns[0]`, the column the goal names
    "use_metric",  # score or decide with a metric that suits the task and class balance
    "balance_classes",  # weight or resample the classes
    "tune",  # stronger or more candidate models, tuned
    "regularise",  # the model overfits
    "fix_evaluation",  # a held-out split, seeds, cross-validation
    "fix_run",  # the run failed or broke the script rules: lighter, or fix the cause
    "do_request",  # a reviewer's request that was not done
]


class Finding(BaseModel):
    severity: Literal["info", "warning", "error"]
    category: str
    message: str
    # Structured, so agents never parse `message`; defaults keep older histories readable.
    columns: list[str] = Field(default_factory=list)
    action: FindingAction | None = None


class Review(BaseModel):
    verdict: Literal["accept", "revise"]
    summary: str
    findings: list[Finding] = Field(default_factory=list)


class ResearchOutcome(BaseModel):
    plan: ResearchPlan
    usage: LlmUsage


class CodeOutcome(BaseModel):
    code: GeneratedCode
    usage: LlmUsage


class ReviewOutcome(BaseModel):
    review: Review
    usage: LlmUsage


class Feedback(BaseModel):
    source: Literal["human", "critic"]
    text: str  # for people (and the only content of a person's feedback)
    step: Step
    at: datetime
    # The critic's findings as data; empty for people and in histories from before the field.
    findings: list[Finding] = Field(default_factory=list)
    # The code version this feedback was given on; the next version is the one that answers it.
    on_version: int | None = None


class AgentContext(BaseModel):
    """What an agent activity sees of the run: the state minus bookkeeping."""

    workflow_id: str
    user_goal: str
    dataset: DatasetInfo
    plan: ResearchPlan | None = None
    feedback: list[Feedback] = Field(default_factory=list)
    eda_code: GeneratedCode | None = None
    eda_result: ExecutionResult | None = None
    training_code: GeneratedCode | None = None
    training_result: ExecutionResult | None = None
    version: int = 1
    # The target a reviewer chose; research must plan for exactly this column.
    target_choice: str | None = None

    def with_planned_target(self) -> AgentContext:
        """This context with the dataset profile describing the plan's target (its task and
        class balance), for the agents after research when a reviewer changed the target."""
        if self.plan is None or self.plan.target == self.dataset.profile.target:
            return self
        profile = self.dataset.profile.for_plan(self.plan)
        return self.model_copy(
            update={"dataset": self.dataset.model_copy(update={"profile": profile})}
        )


# --- Execution --------------------------------------------------------------------------------


class ArtifactRef(BaseModel):
    """A file in the artifact store, addressed by run, step and name."""

    name: str  # path relative to the run's folder, e.g. "ml_worker/v1/model.joblib"
    size_bytes: int
    content_type: str


class ExecutionRequest(BaseModel):
    workflow_id: str
    step: Step
    version: int
    code: str = Field(max_length=MAX_CODE_CHARS)
    # The fetching worker's path. Another worker finds the file in storage by dataset_key (or,
    # when unset, by the run and this path's file name) and checks it against dataset_sha256
    # (or the checksum stored beside it).
    dataset_path: str
    dataset_key: str | None = None
    dataset_sha256: str | None = None


class ExecutionResult(BaseModel):
    backend: str  # "local" or the remote service's URL
    # How the code was isolated: "bubblewrap", "unisolated" or "remote:<url>"; "unknown" in
    # results recorded before this field existed.
    isolation: str = "unknown"
    exit_code: int
    duration_seconds: float
    stdout_tail: str = ""  # the last few KB; the whole output is an artifact
    stderr_tail: str = ""
    metrics: dict[str, float | str] | None = None
    artifacts: list[ArtifactRef] = Field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


class DatasetRequest(BaseModel):
    workflow_id: str
    dataset_url: str
    user_goal: str = ""


AgentContext.model_rebuild()


# --- State ------------------------------------------------------------------------------------


class Message(BaseModel):
    role: Literal["system", "agent", "human"]
    step: Step
    content: str
    at: datetime


class CodeContext(BaseModel):
    eda_code: GeneratedCode | None = None
    eda_result: ExecutionResult | None = None
    training_code: GeneratedCode | None = None
    training_result: ExecutionResult | None = None


class RunState(BaseModel):
    """The spec's AgentState plus what a durable run needs to be operated."""

    workflow_id: str
    user_goal: str
    dataset_url: str  # redacted: no userinfo, no query values
    owner: str | None = None
    audit: list[AuditEntry] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    dataset_info: DatasetInfo | None = None
    research_plan: list[str] = Field(default_factory=list)
    plan: ResearchPlan | None = None
    code_context: CodeContext = Field(default_factory=CodeContext)
    review_feedback: list[Feedback] = Field(default_factory=list)
    review: Review | None = None
    human_approval: HumanApproval = HumanApproval.PENDING
    next_step: Step | None = Step.RESEARCH
    current_step: Step = Step.RESEARCH
    status: RunStatus = RunStatus.STARTED
    rejection_count: int = 0
    critic_rounds: int = 0
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    last_error: str | None = None
    usage: list[LlmUsage] = Field(default_factory=list)
    usage_totals: UsageTotals = Field(default_factory=UsageTotals)

    def status_view(self) -> RunStatusView:
        return RunStatusView(
            workflow_id=self.workflow_id,
            status=self.status,
            current_step=self.current_step,
            user_goal=self.user_goal,
            owner=self.owner,
            eda_version=self.code_context.eda_code.version if self.code_context.eda_code else None,
            research_plan_steps=len(self.research_plan),
            feedback_count=len(self.review_feedback),
            human_approval=self.human_approval,
            rejection_count=self.rejection_count,
            last_error=self.last_error,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class RunStatusView(BaseModel):
    """The spec's status document, plus the fields an operator needs to act on it."""

    workflow_id: str
    status: RunStatus
    current_step: Step
    user_goal: str
    owner: str | None = None
    eda_version: int | None = None  # the EDA code version written (awaiting approval: waiting)
    research_plan_steps: int
    feedback_count: int
    human_approval: HumanApproval
    rejection_count: int = 0
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


# --- Notifications ----------------------------------------------------------------------------

RunEventKind = Literal["awaiting_approval", "completed", "failed", "timed_out"]
MAX_EVENT_GOAL_CHARS = 200
MAX_EVENT_MESSAGE_CHARS = 1000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunEvent(BaseModel):
    """What a webhook tells: a run needs a person or has ended. Never the dataset URL, which
    may carry credentials; the link leads to the run's page, where access is checked."""

    kind: RunEventKind
    workflow_id: str
    status: RunStatus
    step: Step
    user_goal: str = Field(max_length=MAX_EVENT_GOAL_CHARS)
    message: str = Field(default="", max_length=MAX_EVENT_MESSAGE_CHARS)
    version: int | None = None  # the EDA code version awaiting approval
    at: datetime
    link: str | None = None  # filled in by the notify activity from PUBLIC_BASE_URL

    @classmethod
    def about(
        cls, state: RunState, kind: RunEventKind, message: str = "", version: int | None = None
    ) -> RunEvent:
        """The event for `state`, with the goal and message clipped to fit (deterministic)."""
        return cls(
            kind=kind,
            workflow_id=state.workflow_id,
            status=state.status,
            step=state.current_step,
            user_goal=_clip(state.user_goal, MAX_EVENT_GOAL_CHARS),
            message=_clip(message, MAX_EVENT_MESSAGE_CHARS),
            version=version,
            at=state.updated_at,
        )
