"""POST /workflow/{id}/predict: score rows with a finished run's model.

The model file was written by generated code and loading it runs code, so this process never
loads it. The route stores the rows as CSV beside the run's artifacts, starts a short ScoreRows
workflow whose activity scores them in the sandbox, and answers with the predictions.json
that activity stored.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from temporalio.client import WorkflowFailureError

from activities.artifacts import ArtifactNotFound, ArtifactStore
from activities.prediction import INPUT_FILE, discard_prediction_files, write_prediction_file
from api.errors import ApiError, RunNotFound, ServiceUnavailable, WrongRunState
from api.openapi_responses import GUARDED, error_responses
from api.runs import RunService, temporal_errors
from api.security import Principal, Role, require_role
from settings import Settings
from workflows.models import RunState
from workflows.prediction import ScoreRequest, ScoreResult, ScoreRows, score_workflow_id

router = APIRouter(tags=["predictions"])

MODEL_FILE = "model.joblib"
SCHEMA_FILE = "input_schema.json"


class PredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(
        min_length=1,
        description="Rows as they appear in the dataset: column name -> value. The target and "
        "unused columns may be included; they are ignored.",
        examples=[[{"gender": "Female", "tenure": 3, "Contract": "Month-to-month"}]],
    )


class PredictionResponse(BaseModel):
    workflow_id: str
    request_id: str
    model: str = Field(description="The artifact that scored the rows.")
    n_rows: int
    predictions: list[Any]
    classes: list[Any] | None = None
    probabilities: list[dict[str, float | None]] | None = Field(
        default=None, description="Per row, each class's probability (classification only)."
    )


class PayloadTooLarge(ApiError):
    status_code = 413


class LengthRequired(ApiError):
    status_code = 411


class ScoringFailed(ApiError):
    status_code = 500


_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary", "minLength": 1}},
                "required": ["file"],
                # Only the file is read; other fields are refused (at most a few are parsed).
                "additionalProperties": False,
            }
        },
    },
}


@router.post(
    "/workflow/{workflow_id}/predict",
    response_model=PredictionResponse,
    responses={
        **error_responses(*GUARDED, 404, 409),
        411: {"description": "No Content-Length header"},
        413: {"description": "The body is over PREDICT_MAX_UPLOAD_BYTES"},
    },
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def predict(
    request: Request,
    principal: Annotated[Principal, Depends(require_role(Role.VIEWER))],
    workflow_id: str,
) -> PredictionResponse | JSONResponse:
    """Score rows with the run's model: JSON `{"rows": [...]}` or a CSV upload (`file`).

    422 names unknown or missing columns; 404 for an unknown run or one without a model; 409
    while the run has not finished.
    """
    settings: Settings = request.app.state.settings
    store: ArtifactStore = request.app.state.artifacts
    runs: RunService = request.app.state.runs
    rows_csv = await _read_rows(request, settings)
    state = await runs.state(workflow_id, principal)
    model, schema = _model_of(state, store)

    request_id = uuid.uuid4().hex
    try:
        input_name = await asyncio.to_thread(
            write_prediction_file, store, workflow_id, request_id, INPUT_FILE, rows_csv
        )
        score = ScoreRequest(
            workflow_id=workflow_id,
            request_id=request_id,
            model_artifact=model,
            schema_artifact=schema,
            input_artifact=input_name,
            max_rows=settings.predict_max_rows,
            timeout_seconds=settings.predict_timeout_seconds,
        )
        return await _score(score, runs, store, settings)
    finally:
        await asyncio.to_thread(discard_prediction_files, store, workflow_id, request_id)


async def _score(
    score: ScoreRequest, runs: RunService, store: ArtifactStore, settings: Settings
) -> PredictionResponse | JSONResponse:
    """Score the stored rows in the sandbox (the ScoreRows workflow) and read its answer."""
    workflow_id, request_id = score.workflow_id, score.request_id
    client = await runs.gateway.client()
    async with temporal_errors(workflow_id), _scoring_errors(workflow_id):
        result = await client.execute_workflow(
            ScoreRows.run,
            score,
            id=score_workflow_id(workflow_id, request_id),
            task_queue=settings.temporal_task_queue,
            execution_timeout=timedelta(seconds=settings.predict_timeout_seconds + 120),
        )
    if not result.ok:
        return _refusal(workflow_id, result)
    assert result.predictions_artifact is not None
    try:
        raw = await asyncio.to_thread(store.read_bytes, workflow_id, result.predictions_artifact)
        body = json.loads(raw)
    except (ArtifactNotFound, OSError, ValueError) as err:
        raise ScoringFailed(
            f"Scoring request {request_id} of run {workflow_id!r} stored no readable "
            "predictions; try again, and look at the worker's log if it persists."
        ) from err
    return PredictionResponse(
        workflow_id=workflow_id,
        request_id=request_id,
        model=score.model_artifact,
        n_rows=result.n_rows,
        predictions=body.get("predictions", []),
        classes=body.get("classes"),
        probabilities=body.get("probabilities"),
    )


async def _read_rows(request: Request, settings: Settings) -> bytes:
    """The rows as CSV bytes, from a JSON body or an uploaded file, within the size limits."""
    limit = settings.predict_max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is None:
        raise LengthRequired("Send the rows with a Content-Length header (no chunked upload).")
    if not declared.isdigit() or int(declared) > limit:
        raise PayloadTooLarge(
            f"The request body has {declared} bytes; the limit is {limit:,} "
            "(PREDICT_MAX_UPLOAD_BYTES). Split the rows into smaller requests."
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except HTTPException as err:  # Starlette's 400 for a form it cannot parse
            raise _invalid("file", f"the multipart form could not be read: {err.detail}") from None
        extra = sorted(set(form.keys()) - {"file"})
        if extra:
            raise _invalid(
                "file", f"only the field 'file' is read; remove {', '.join(map(repr, extra[:3]))}"
            )
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid("file", "upload the rows as a CSV file in the form field 'file'")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"The uploaded file is larger than {limit:,} bytes.")
        if not data.strip():
            raise _invalid("file", "the uploaded file is empty")
        return data
    if content_type != "application/json":
        raise _invalid(
            "content-type",
            "send application/json ({'rows': [...]}) or multipart/form-data with a CSV 'file'",
        )
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None
    if len(body.rows) > settings.predict_max_rows:
        raise _invalid(
            "rows",
            f"{len(body.rows):,} rows; at most {settings.predict_max_rows:,} per request "
            "(PREDICT_MAX_ROWS)",
        )
    frame = pd.DataFrame.from_records(body.rows)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


@asynccontextmanager
async def _scoring_errors(workflow_id: str) -> AsyncIterator[None]:
    """A ScoreRows run that failed (no sandbox on the worker, say) is the service's fault."""
    try:
        yield
    except WorkflowFailureError as err:
        # The activity's own message is the useful one (the workflow only wraps it).
        cause = getattr(err.cause, "cause", None) or err.cause
        raise ServiceUnavailable(
            f"The worker could not score rows for run {workflow_id!r}: {cause}. Ask an operator "
            "to check the worker's sandbox."
        ) from err


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _model_of(state: RunState, store: ArtifactStore) -> tuple[str, str]:
    """The kept training round's model and input schema, or why there is none to use."""
    workflow_id = state.workflow_id
    if not state.status.is_final:
        raise WrongRunState(
            f"Run {workflow_id!r} is {state.status.value} at {state.current_step.value}; its "
            "model can score rows once the run has completed."
        )
    result = state.code_context.training_result
    names = {a.name for a in result.artifacts} if result else set()
    model = next((n for n in sorted(names) if n.endswith(f"/{MODEL_FILE}")), None)
    if model is None:
        raise RunNotFound(f"Run {workflow_id!r} ({state.status.value}) has no trained model.")
    schema = model.removesuffix(MODEL_FILE) + SCHEMA_FILE
    if schema not in names:
        raise RunNotFound(
            f"Run {workflow_id!r}'s model has no {SCHEMA_FILE}, so rows cannot be checked "
            "against it; retrain with a current version of the service."
        )
    return model, schema


def _refusal(workflow_id: str, result: ScoreResult) -> JSONResponse:
    if result.error == "scoring_failed":
        raise ScoringFailed(f"Scoring with run {workflow_id!r}'s model failed: {result.message}")
    errors = [
        {"field": f"columns.{name}", "message": "missing required column", "type": "missing"}
        for name in result.missing_columns
    ] + [
        {"field": f"columns.{name}", "message": "unknown column", "type": "unknown_column"}
        for name in result.unknown_columns
    ]
    return JSONResponse(
        {
            "detail": f"The rows cannot be scored by run {workflow_id!r}'s model: {result.message}",
            "errors": errors,
            "missing_columns": result.missing_columns,
            "unknown_columns": result.unknown_columns,
        },
        status_code=422,
    )
