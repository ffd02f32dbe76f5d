"""Request and response bodies of the REST API, as the OpenAPI docs show them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from workflows.models import RunStatus, Step

WORKFLOW_ID_PATTERN = r"^wf-[A-Za-z0-9_-]{3,64}$"


class StartRequest(BaseModel):
    user_goal: str = Field(min_length=1, max_length=4000, examples=["Build a customer churn model"])
    dataset_url: str = Field(
        min_length=1, max_length=2048, examples=["https://example.com/churn.csv"]
    )
    workflow_id: str | None = Field(
        default=None,
        pattern=WORKFLOW_ID_PATTERN,
        description="Optional client-chosen id; starting twice with it returns the same run.",
    )

    @field_validator("dataset_url")
    @classmethod
    def _supported_scheme(cls, value: str) -> str:
        # Refuse at the door what intake could never fetch, rather than start a doomed run.
        scheme, separator, _ = value.partition("://")
        if separator and scheme.lower() not in ("http", "https", "file"):
            raise ValueError(f"unsupported scheme {scheme!r}: use http(s)://, file:// or a path")
        return value


class StartResponse(BaseModel):
    workflow_id: str
    status: RunStatus
    message: str


_VERSION_FIELD_DESCRIPTION = (
    "The EDA code version you reviewed; if another version is waiting the call is refused (409)."
)


class ApproveRequest(BaseModel):
    version: int | None = Field(default=None, ge=1, description=_VERSION_FIELD_DESCRIPTION)


class RejectRequest(BaseModel):
    feedback: str | None = Field(default=None, max_length=4000)
    version: int | None = Field(default=None, ge=1, description=_VERSION_FIELD_DESCRIPTION)


class ActionResponse(BaseModel):
    workflow_id: str
    status: str
    message: str


class RunSummary(BaseModel):
    workflow_id: str
    status: RunStatus
    current_step: Step | None
    user_goal: str | None
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
