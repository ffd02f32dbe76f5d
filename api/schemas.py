"""Request and response bodies of the REST API, as the OpenAPI docs show them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.uploads import DATASET_ID_PATTERN
from workflows.models import RunStatus, RunStatusView, Step

WORKFLOW_ID_PATTERN = r"^wf-[A-Za-z0-9_-]{3,64}$"
# What the validators below enforce, stated in the schema so clients (and fuzzers) know it.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
PROSE_CHARACTERS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # tabs and line breaks allowed


class FieldError(BaseModel):
    field: str = Field(examples=["body.dataset_url"])
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error the API returns: what went wrong and what to do, for a person to read."""

    detail: str = Field(examples=["No run with id 'wf-3f9c2a1b7d4e'."])
    errors: list[FieldError] | None = Field(
        default=None, description="For 422 only: each invalid field."
    )


class StartRequest(BaseModel):
    # The schema says what the validator enforces: exactly one dataset source.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["dataset_url"], "properties": {"dataset_url": {"type": "string"}}},
                {"required": ["dataset_id"], "properties": {"dataset_id": {"type": "string"}}},
            ]
        }
    )

    user_goal: str = Field(
        min_length=1,
        max_length=4000,
        examples=["Build a customer churn model"],
        json_schema_extra={"pattern": PROSE_CHARACTERS},
    )
    dataset_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        json_schema_extra={"pattern": NO_CONTROL_CHARACTERS},
        examples=["https://example.com/churn.csv"],
        description=(
            "Where the CSV is: http(s), a path under DATASET_ROOTS, or a run's `upload://ds-…` "
            "reference to one of your uploads. Or give dataset_id."
        ),
    )
    dataset_id: str | None = Field(
        default=None,
        pattern=DATASET_ID_PATTERN,
        description="A dataset uploaded with POST /datasets, instead of dataset_url.",
    )
    workflow_id: str | None = Field(
        default=None,
        pattern=WORKFLOW_ID_PATTERN,
        description="Optional client-chosen id; starting twice with it returns the same run.",
    )

    @field_validator("dataset_url")
    @classmethod
    def _supported_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Refuse at the door what intake could never fetch, rather than start a doomed run.
        scheme, separator, _ = value.partition("://")
        if separator and scheme.lower() not in ("http", "https", "file", "upload"):
            raise ValueError(
                f"unsupported scheme {scheme!r}: use http(s)://, file://, upload:// or a path"
            )
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError("contains control characters (NUL, newline, ...)")
        return value

    @field_validator("user_goal")
    @classmethod
    def _printable_goal(cls, value: str) -> str:
        # Line breaks and tabs are prose; NUL and other control characters break logs, search
        # attributes and prompts.
        if any((ord(char) < 32 and char not in "\t\n\r") or ord(char) == 127 for char in value):
            raise ValueError("contains control characters (NUL, ...); only tabs and newlines")
        return value

    @model_validator(mode="after")
    def _one_dataset_source(self) -> StartRequest:
        if (self.dataset_url is None) == (self.dataset_id is None):
            raise ValueError("give exactly one of dataset_url or dataset_id")
        return self


class StartResponse(BaseModel):
    workflow_id: str
    status: RunStatus
    message: str


_VERSION_FIELD_DESCRIPTION = (
    "The EDA code version you reviewed; if another version is waiting the call is refused (409)."
)


_TARGET_FIELD_DESCRIPTION = (
    "The column to predict. Required to approve a plan that is unsure of its target "
    "(`plan.needs_target_choice`; 409 lists the candidates otherwise); a target other than "
    "the plan's re-plans the run for it, and the new code waits for approval again."
)


class ApproveRequest(BaseModel):
    version: int | None = Field(default=None, ge=1, description=_VERSION_FIELD_DESCRIPTION)
    target: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description=_TARGET_FIELD_DESCRIPTION,
        examples=["Churn"],
    )


class RejectRequest(BaseModel):
    feedback: str | None = Field(default=None, max_length=4000)
    version: int | None = Field(default=None, ge=1, description=_VERSION_FIELD_DESCRIPTION)
    target: str | None = Field(
        default=None, min_length=1, max_length=500, description=_TARGET_FIELD_DESCRIPTION
    )


class ActionResponse(BaseModel):
    workflow_id: str
    status: str
    message: str
    run: RunStatusView | None = Field(
        default=None, description="The run right after this decision took effect."
    )


class RunSummary(BaseModel):
    workflow_id: str
    status: RunStatus
    current_step: Step | None
    user_goal: str | None
    owner: str | None = None
    started_at: datetime | None
    closed_at: datetime | None


class RunList(BaseModel):
    workflows: list[RunSummary]
    count: int
    next_page_token: str | None = Field(
        description="Pass as `page_token` to get the next page; null on the last page."
    )


class ArtifactEntry(BaseModel):
    name: str = Field(examples=["ml_worker/v1/metrics.json"])
    size_bytes: int
    content_type: str
    url: str = Field(description="Where to download it from this API.")


class ArtifactList(BaseModel):
    workflow_id: str
    artifacts: list[ArtifactEntry]


class Health(BaseModel):
    status: str
    temporal: str
    namespace: str
    task_queue: str
    detail: str | None = None
