"""score_rows: a finished run's model scores rows, loaded only inside the sandbox.

The model file was written by generated code; unpickling it runs code. So this activity never
loads it: it packs the model, its input schema and the rows into one archive, mounts that as
the sandbox's only input (the way execute_eda and train_model mount a dataset) and runs the
fixed script activities/scripts/score.py there. Only the JSON the script writes comes back.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactNotFound, ArtifactStore
from activities.heartbeats import run_with_heartbeats
from activities.sandbox import Isolation, SandboxLimits, SandboxUnavailable, run_python, tail_text
from settings import Settings
from workflows.prediction import (
    NOT_RETRYABLE,
    SCORE_ROWS_ACTIVITY,
    ScoreRequest,
    ScoreResult,
)

SCRIPT_PATH = Path(__file__).resolve().parent / "scripts" / "score.py"
PREDICTIONS_FOLDER = "predictions"
INPUT_FILE = "input.csv"
PREDICTIONS_FILE = "predictions.json"
# What the sandboxed script may hand back: predictions for the largest allowed request.
MAX_RESULT_BYTES = 64 * 1024 * 1024
_KNOWN_ERRORS = {
    "invalid_columns",
    "too_many_rows",
    "no_rows",
    "unreadable_rows",
    "invalid_schema",
    "prediction_failed",
}


def prediction_name(request_id: str, file_name: str) -> str:
    """The artifact name (relative to the run's folder) of one file of one predict request."""
    if len(request_id) != 32 or any(c not in "0123456789abcdef" for c in request_id):
        raise ValueError(f"invalid prediction request id {request_id!r}")
    return f"{PREDICTIONS_FOLDER}/{request_id}/{file_name}"


def discard_prediction_files(store: ArtifactStore, workflow_id: str, request_id: str) -> None:
    """Remove a predict request's rows and predictions once its caller has the answer: scored
    rows are the caller's data, not the run's, and kept they would grow without end."""
    store.delete_run_folder(workflow_id, prediction_name(request_id, "").rstrip("/"))


def write_prediction_file(
    store: ArtifactStore, workflow_id: str, request_id: str, file_name: str, data: bytes
) -> str:
    """Write one file of a predict request atomically; its artifact name."""
    return store.write_run_file(workflow_id, prediction_name(request_id, file_name), data).name


def _rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type=NOT_RETRYABLE[0], non_retryable=True)


class PredictionActivities:
    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore,
        *,
        scratch_dir: Path | None = None,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.store = store
        # The worker passes its own locked scratch folder, which no other worker sweeps.
        self.scratch_dir = scratch_dir or settings.data_dir / "scratch" / "scoring"
        self.limits = SandboxLimits.from_settings(settings)
        self.isolation = Isolation(settings.sandbox)
        self.heartbeat_seconds = heartbeat_seconds

    @activity.defn(name=SCORE_ROWS_ACTIVITY)
    async def score_rows(self, request: ScoreRequest) -> ScoreResult:
        label = f"run {request.workflow_id}, prediction {request.request_id}"
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(
            tempfile.mkdtemp(prefix=f"score-{request.request_id}-", dir=self.scratch_dir)
        )
        try:
            try:  # copied out of storage: the worker that trained may be another one
                paths = await run_with_heartbeats(
                    asyncio.to_thread(self._copy_inputs, request, scratch / "inputs"),
                    self.heartbeat_seconds,
                )
            except ArtifactNotFound as error:
                raise _rejected(f"{label}: {error}") from None
            bundle = scratch / "bundle.zip"
            await asyncio.to_thread(_pack, bundle, paths, request.max_rows)
            limits = replace(self.limits, wall_seconds=request.timeout_seconds)
            script = SCRIPT_PATH.read_text(encoding="utf-8")
            try:
                run = await run_with_heartbeats(
                    run_python(script, bundle, scratch / "work", limits, isolation=self.isolation),
                    self.heartbeat_seconds,
                )
            except SandboxUnavailable as error:
                # Fail closed: a model is never loaded outside the sandbox.
                raise _rejected(
                    f"{label}: this worker cannot isolate the scoring: {error}"
                ) from None
            return await asyncio.to_thread(self._collect, request, run.exit_code, run.message,
                                           run.stderr, scratch / "work")  # fmt: skip
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)

    def _copy_inputs(self, request: ScoreRequest, folder: Path) -> list[Path]:
        names = (request.model_artifact, request.schema_artifact, request.input_artifact)
        return [
            self.store.copy_to(request.workflow_id, name, folder / str(index))
            for index, name in enumerate(names)
        ]

    def _collect(
        self, request: ScoreRequest, exit_code: int, message: str, stderr: str, workdir: Path
    ) -> ScoreResult:
        """The script's answer, read as JSON (data only) and checked for the expected shape."""
        error = _read_json(workdir / "error.json")
        if exit_code != 0:
            if error is not None and error.get("error") in _KNOWN_ERRORS:
                return ScoreResult(
                    ok=False,
                    error=error["error"],
                    message=str(error.get("message", ""))[:2000],
                    missing_columns=_names(error.get("missing_columns")),
                    unknown_columns=_names(error.get("unknown_columns")),
                )
            lines = [line for line in tail_text(stderr, 2000).splitlines() if line.strip()]
            cause = f": {lines[-1][:500]}" if lines else ""
            return ScoreResult(
                ok=False, error="scoring_failed", message=f"the scoring code {message}{cause}"
            )
        result = _read_json(workdir / "predictions.json")
        predictions = result.get("predictions") if result else None
        if not isinstance(predictions, list):
            return ScoreResult(
                ok=False, error="scoring_failed", message="the scoring wrote no predictions"
            )
        name = write_prediction_file(
            self.store,
            request.workflow_id,
            request.request_id,
            PREDICTIONS_FILE,
            json.dumps(result).encode("utf-8"),
        )
        return ScoreResult(ok=True, predictions_artifact=name, n_rows=len(predictions))


def _pack(bundle: Path, paths: list[Path], max_rows: int) -> None:
    """The archive the sandbox receives as its dataset; stored, not compressed (a model is
    mostly numbers, and this is a copy that should be quick)."""
    model, schema, rows = paths
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(model, "model.joblib")
        archive.write(schema, "input_schema.json")
        archive.write(rows, INPUT_FILE)
        archive.writestr("request.json", json.dumps({"max_rows": max_rows}))


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        if path.is_symlink() or path.stat().st_size > MAX_RESULT_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _names(value: object) -> list[str]:
    return [str(v)[:200] for v in value][:100] if isinstance(value, list) else []
