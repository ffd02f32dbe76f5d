"""ScoreRows: one short run that scores rows with a finished run's model, in the sandbox.

The API starts it per predict request; its single activity runs a fixed scoring script in the
sandbox with the model, its input schema and the rows, and stores predictions.json. Only
names of files travel through Temporal, never the rows or the predictions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

SCORE_ROWS_WORKFLOW = "ScoreRows"
SCORE_ROWS_ACTIVITY = "score_rows"
# Scoring failures the rows or the model cause would fail the same way again.
NOT_RETRYABLE = ["ScoringRejected"]

ScoreError = Literal[
    "invalid_columns",
    "too_many_rows",
    "no_rows",
    "unreadable_rows",
    "invalid_schema",
    "prediction_failed",
    "scoring_failed",
]


class ScoreRequest(BaseModel):
    workflow_id: str  # the data-science run whose model scores the rows
    request_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    model_artifact: str  # e.g. "ml_worker/v1/model.joblib", relative to the run's folder
    schema_artifact: str  # its input_schema.json
    input_artifact: str  # "predictions/<request_id>/input.csv"
    max_rows: int = Field(ge=1)
    timeout_seconds: float = Field(gt=0)


class ScoreResult(BaseModel):
    ok: bool
    predictions_artifact: str | None = None  # "predictions/<request_id>/predictions.json"
    n_rows: int = 0
    error: ScoreError | None = None
    message: str = ""
    missing_columns: list[str] = Field(default_factory=list)
    unknown_columns: list[str] = Field(default_factory=list)


def score_workflow_id(workflow_id: str, request_id: str) -> str:
    return f"{workflow_id}-predict-{request_id}"


@workflow.defn(name=SCORE_ROWS_WORKFLOW)
class ScoreRows:
    @workflow.run
    async def run(self, request: ScoreRequest) -> ScoreResult:
        return await workflow.execute_activity(
            SCORE_ROWS_ACTIVITY,
            request,
            result_type=ScoreResult,
            # The sandbox enforces the wall-clock limit; this is the backstop.
            start_to_close_timeout=timedelta(seconds=request.timeout_seconds + 60),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_attempts=2,
                non_retryable_error_types=NOT_RETRYABLE,
            ),
        )
