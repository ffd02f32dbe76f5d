"""Running approved code: one executor interface; a local sandbox or a remote service."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactStore, iter_regular_files
from activities.dataset_cache import (
    CACHE_FOLDER,
    DatasetCache,
    DatasetChecksumMismatch,
    DatasetLease,
)
from activities.heartbeats import run_with_heartbeats
from activities.sandbox import (
    Isolation,
    LimitExceeded,
    SandboxLimits,
    SandboxUnavailable,
    run_python,
    tail_text,
)
from activities.scratch import WorkerScratch
from activities.scratch import sweep as sweep_scratch
from activities.storage import (
    StorageKeyMissing,
    dataset_key,
    is_shared_folder,
    stored_dataset_sha256,
)
from activities.telemetry import record_execution
from settings import Settings
from workflows.contract import RETRYABLE_ERRORS, ActivityName, ErrorType
from workflows.models import ArtifactRef, ExecutionRequest, ExecutionResult

T = TypeVar("T")

TAIL_BYTES = 4096  # of stdout / stderr in the result; the whole (capped) logs are artifacts
MAX_METRICS = 100
MAX_METRIC_TEXT = 200
CODE_FILE = "code.py"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
METRICS_FILE = "metrics.json"
RESPONSE_FILE = "response.json"
_ERROR_BODY_CHARS = 500


# --- Executors --------------------------------------------------------------------------------


@dataclass
class ExecutionOutcome:
    """What an executor reports; its produced files are in output_dir under output_files."""

    backend: str
    isolation: str  # "bubblewrap", "unisolated" or "remote:<url>"
    exit_code: int
    duration_seconds: float
    stdout: str
    stderr: str
    output_dir: Path
    output_files: list[str] = field(default_factory=list)
    metrics: dict[str, Any] | None = None  # as reported by the backend, if it reports any
    limit_message: str | None = None  # set when a resource limit ended the run
    limit: LimitExceeded | None = None  # which one, for metrics


class Executor(Protocol):
    """Runs one ExecutionRequest; workdir is a fresh folder that it may use for outputs."""

    @property
    def backend(self) -> str: ...

    async def run(self, request: ExecutionRequest, workdir: Path) -> ExecutionOutcome: ...


class LocalExecutor:
    """The sandbox on this worker: bubblewrap (or, on purpose, unisolated) with its limits."""

    backend = "local"

    def __init__(self, limits: SandboxLimits, isolation: Isolation = Isolation.BUBBLEWRAP) -> None:
        self.limits = limits
        self.isolation = isolation

    async def run(self, request: ExecutionRequest, workdir: Path) -> ExecutionOutcome:
        try:
            run = await run_python(
                request.code,
                Path(request.dataset_path),
                workdir,
                self.limits,
                isolation=self.isolation,
            )
        except SandboxUnavailable as error:
            # Fail closed: not run at all, and not retried, since this worker cannot fix it.
            raise executor_error(
                ErrorType.SANDBOX_UNAVAILABLE,
                f"generated code was not run because this worker cannot isolate it: {error}",
            ) from None
        stderr = run.stderr
        if run.exit_code != 0:
            # Say how the process ended in its own log, where the critic reads it.
            stderr = f"{stderr.rstrip()}\n[sandbox] the code {run.message}\n".lstrip()
        return ExecutionOutcome(
            backend=self.backend,
            isolation=run.isolation.value,
            exit_code=run.exit_code,
            duration_seconds=run.duration_seconds,
            stdout=run.stdout,
            stderr=stderr,
            output_dir=workdir,
            output_files=run.output_files,
            limit_message=run.message if run.limit_exceeded else None,
            limit=run.limit_exceeded,
        )


class RemoteExecutor:
    """A service that runs the code elsewhere: the spec's Browser Agent or ML Worker.

    Request (POST {base_url}{endpoint}): the spec's fields, {"code": ...} for /execute and
    {"dataset": <file path>} for /train, plus (additively) the other of the two and
    "workflow_id", "step", "version", so either service can run either kind of job. The path is
    on this worker's disk, so the service must share it; with object storage (STORAGE_URL) the
    request also has "dataset_url", a presigned GET URL the service can download instead.

    Response, a JSON object whose fields are all optional: "exit_code" (int; or "success": bool,
    or "status": "success"/"ok"/"completed"/"error"/"failed"), "stdout" (or "output"), "stderr"
    (or "error"), "metrics" (object), "files" (object of name -> text, or name -> {"base64": ...}).
    A 2xx without exit status counts as success; the whole body is kept as response.json.
    """

    def __init__(
        self,
        base_url: str,
        endpoint: str,
        *,
        timeout_seconds: float,
        connect_timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        dataset_url_for: Callable[[ExecutionRequest], str | None] | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + endpoint
        self.dataset_url_for = dataset_url_for
        self.timeout_seconds = timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        self.transport = transport

    @property
    def backend(self) -> str:
        return self.url

    @property
    def isolation(self) -> str:
        return f"remote:{self.url}"  # whatever that service does; this worker cannot tell

    async def run(self, request: ExecutionRequest, workdir: Path) -> ExecutionOutcome:
        payload = {
            "code": request.code,
            "dataset": request.dataset_path,
            "workflow_id": request.workflow_id,
            "step": request.step.value,
            "version": request.version,
        }
        if self.dataset_url_for is not None:
            dataset_url = await asyncio.to_thread(self.dataset_url_for, request)
            if dataset_url:
                payload["dataset_url"] = dataset_url
        # The read timeout is the job's wall-clock limit: the service answers when it is done.
        timeout = httpx.Timeout(self.timeout_seconds, connect=self.connect_timeout_seconds)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=timeout, transport=self.transport) as client:
                response = await client.post(
                    self.url, json=payload, headers={"Idempotency-Key": _job_key(request)}
                )
        except httpx.ReadTimeout:
            return self._timed_out(workdir, time.monotonic() - started)
        except httpx.TransportError as error:
            raise executor_error(
                ErrorType.EXECUTOR_UNAVAILABLE,
                f"{self.url} is unreachable ({type(error).__name__}: {error}); will retry",
            ) from None
        duration = time.monotonic() - started
        self._check_status(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise executor_error(
                ErrorType.EXECUTOR_REJECTED,
                f"{self.url} answered HTTP {response.status_code} with something other than a "
                f"JSON object: {response.text[:_ERROR_BODY_CHARS]!r}",
            )
        return self._outcome(body, response.content, workdir, duration)

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        excerpt = response.text[:_ERROR_BODY_CHARS]
        if status >= 500 or status in {408, 429}:
            raise executor_error(
                ErrorType.EXECUTOR_UNAVAILABLE,
                f"{self.url} failed with HTTP {status} (will retry): {excerpt}",
            )
        raise executor_error(
            ErrorType.EXECUTOR_REJECTED,
            f"{self.url} rejected the job with HTTP {status}: {excerpt}",
        )

    def _timed_out(self, workdir: Path, duration: float) -> ExecutionOutcome:
        message = f"exceeded the {self.timeout_seconds:g} s wall-clock limit"
        return ExecutionOutcome(
            backend=self.backend,
            isolation=self.isolation,
            exit_code=-1,
            duration_seconds=round(duration, 3),
            stdout="",
            stderr=f"[orchestrator] {self.url} did not answer: the job {message}\n",
            output_dir=workdir,
            limit_message=message,
            limit=LimitExceeded.WALL_CLOCK,
        )

    def _outcome(
        self, body: dict[str, Any], raw: bytes, workdir: Path, duration: float
    ) -> ExecutionOutcome:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / RESPONSE_FILE).write_bytes(raw)
        notes = _write_returned_files(body.get("files"), workdir)
        stderr = _text(body.get("stderr", body.get("error")))
        if notes:
            stderr = stderr + "".join(f"[orchestrator] {note}\n" for note in notes)
        metrics = body.get("metrics")
        return ExecutionOutcome(
            backend=self.backend,
            isolation=self.isolation,
            exit_code=_exit_code(body),
            duration_seconds=round(duration, 3),
            stdout=_text(body.get("stdout", body.get("output"))),
            stderr=stderr,
            output_dir=workdir,
            output_files=list(iter_regular_files(workdir)),
            metrics=metrics if isinstance(metrics, dict) else None,
        )


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _exit_code(body: dict[str, Any]) -> int:
    if isinstance(body.get("exit_code"), int):
        return int(body["exit_code"])
    if isinstance(body.get("success"), bool):
        return 0 if body["success"] else 1
    status = str(body.get("status", "")).lower()
    return 1 if status in {"error", "failed", "failure"} else 0


def _write_returned_files(files: Any, workdir: Path) -> list[str]:
    """Write the files a service sent back; names that would leave workdir are refused."""
    notes: list[str] = []
    if not isinstance(files, dict):
        return notes
    for name, content in files.items():
        parts = str(name).split("/")
        if str(name).startswith("/") or any(p in {"", ".", ".."} or "\\" in p for p in parts):
            notes.append(f"ignored returned file with unsafe name {name!r}")
            continue
        try:
            if isinstance(content, dict) and "base64" in content:
                data = base64.b64decode(content["base64"], validate=True)
            elif isinstance(content, str):
                data = content.encode("utf-8")
            else:
                data = json.dumps(content).encode("utf-8")
        except (binascii.Error, ValueError):
            notes.append(f"ignored returned file {name!r}: invalid base64")
            continue
        target = workdir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return notes


def _dataset_missing(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.DATASET_NOT_FOUND.value, non_retryable=True)


def executor_error(error_type: ErrorType, message: str) -> ApplicationError:
    return ApplicationError(
        message, type=error_type.value, non_retryable=error_type not in RETRYABLE_ERRORS
    )


# --- Activities -------------------------------------------------------------------------------


def _job_key(request: ExecutionRequest) -> str:
    """The same for every attempt at one step's version, so a service can drop a duplicate
    job after a retry whose first request did arrive (e.g. the connection broke mid-job)."""
    return f"{request.workflow_id}/{request.step.value}/v{request.version}"


class ExecutionActivities:
    """execute_eda and train_model: run the code, keep everything it produced, report back.

    A non-zero exit of the code is a result (the critic reviews it), not an activity failure;
    a resource limit is a non-retryable failure, since a retry would hit the same limit.
    """

    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore,
        *,
        eda_executor: Executor | None = None,
        training_executor: Executor | None = None,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.store = store
        # Datasets come from the same storage as artifacts; with object storage, a worker that
        # did not fetch a run's dataset downloads it once into its cache, verified.
        self.storage = store.storage
        self.dataset_cache = DatasetCache(
            self.storage, settings.data_dir / CACHE_FOLDER, settings.dataset_cache_max_bytes
        )
        self.own_datasets_dir = settings.datasets_dir
        # This worker's own scratch folder, locked for its lifetime (activities/scratch.py).
        self.scratch = WorkerScratch(settings.data_dir / "scratch")
        self.scratch_dir = self.scratch.folder
        # For folders of workers from before the locks: a live attempt is never older than the
        # execution limit; twice that is debris.
        self.scratch_max_age_seconds = 2 * settings.execution_timeout_seconds
        self.heartbeat_seconds = heartbeat_seconds
        local = LocalExecutor(SandboxLimits.from_settings(settings), Isolation(settings.sandbox))
        timeout = settings.execution_timeout_seconds
        # A remote service cannot read this worker's cache: object storage gives it a URL.
        presign = None if is_shared_folder(self.storage) else self.presigned_dataset_url
        self.eda_executor: Executor = eda_executor or (
            RemoteExecutor(
                settings.browser_agent_url,
                "/execute",
                timeout_seconds=timeout,
                dataset_url_for=presign,
            )
            if settings.browser_agent_url
            else local
        )
        self.training_executor: Executor = training_executor or (
            RemoteExecutor(
                settings.ml_worker_url, "/train", timeout_seconds=timeout, dataset_url_for=presign
            )
            if settings.ml_worker_url
            else local
        )

    @activity.defn(name=ActivityName.EXECUTE_EDA)
    async def execute_eda(self, request: ExecutionRequest) -> ExecutionResult:
        return await self.execute(self.eda_executor, request)

    @activity.defn(name=ActivityName.TRAIN_MODEL)
    async def train_model(self, request: ExecutionRequest) -> ExecutionResult:
        return await self.execute(self.training_executor, request)

    async def execute(self, executor: Executor, request: ExecutionRequest) -> ExecutionResult:
        label = f"run {request.workflow_id}, step {request.step.value} v{request.version}"
        try:
            self.store.version_key(request.workflow_id, request.step, request.version)
        except ValueError as error:
            raise executor_error(ErrorType.EXECUTOR_REJECTED, f"{label}: {error}") from None
        dataset = await run_with_heartbeats(
            asyncio.to_thread(self._local_dataset, request, label), self.heartbeat_seconds
        )
        # The executors read the dataset from this worker's disk, wherever intake stored it;
        # the lease keeps the cache from evicting it meanwhile.
        request = request.model_copy(update={"dataset_path": str(dataset.path)})

        with dataset:
            scratch = self._new_scratch_dir(request)
            try:
                outcome = await run_with_heartbeats(
                    executor.run(request, scratch / "work"), self.heartbeat_seconds
                )
                # Moving outputs (possibly a large model) is file I/O: kept off the event loop.
                metrics, refs = await run_with_heartbeats(
                    asyncio.to_thread(self._publish, request, outcome), self.heartbeat_seconds
                )
            finally:
                await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)

        record_execution(outcome.backend, outcome.exit_code, outcome.limit)
        if outcome.limit_message:
            raise ApplicationError(
                f"{label}: the code {outcome.limit_message} (its code and logs are stored as "
                "artifacts)",
                {"backend": outcome.backend, "limit": outcome.limit_message},
                type=ErrorType.EXECUTION_LIMIT.value,
                non_retryable=True,
            )
        return ExecutionResult(
            backend=outcome.backend,
            isolation=outcome.isolation,
            exit_code=outcome.exit_code,
            duration_seconds=outcome.duration_seconds,
            stdout_tail=tail_text(outcome.stdout, TAIL_BYTES),
            stderr_tail=tail_text(outcome.stderr, TAIL_BYTES),
            metrics=metrics,
            artifacts=refs,
        )

    def _local_dataset(self, request: ExecutionRequest, label: str) -> DatasetLease:
        """The run's dataset as a file on this worker: where intake put it when the storage is
        a shared folder or this worker fetched it, else this worker's verified cached copy."""
        path = Path(request.dataset_path)
        if is_shared_folder(self.storage) or (
            path.is_relative_to(self.own_datasets_dir) and path.is_file()
        ):
            if path.is_file():
                return DatasetLease(path, None)
            raise _dataset_missing(f"{label}: the dataset file {path} is missing on this worker")
        key = request.dataset_key or dataset_key(request.workflow_id, path.name)
        try:
            sha256 = request.dataset_sha256 or stored_dataset_sha256(self.storage, key)
            return self.dataset_cache.lease(key, sha256)
        except StorageKeyMissing:
            raise _dataset_missing(
                f"{label}: the dataset {key} is not in {self.storage.description}; start the "
                "run again to fetch it"
            ) from None
        except DatasetChecksumMismatch as error:
            raise _dataset_missing(f"{label}: {error}") from None

    def presigned_dataset_url(self, request: ExecutionRequest) -> str | None:
        """A short-lived GET URL of the run's stored dataset, for a remote executor."""
        key = request.dataset_key or dataset_key(
            request.workflow_id, Path(request.dataset_path).name
        )
        return self.storage.presigned_url(
            key,
            # Long enough for a queued job to start downloading.
            expires_seconds=int(max(3600, 2 * self.scratch_max_age_seconds)),
            filename=Path(key).name,
            content_type="application/octet-stream",
        )

    def sweep_stale_scratch(self) -> list[str]:
        """Remove the scratch folders of workers that are gone (killed mid-step, even by -9);
        those of live workers sharing the data directory stay, whatever their age."""
        return sweep_scratch(self.scratch.root, self.scratch_max_age_seconds)

    def _new_scratch_dir(self, request: ExecutionRequest) -> Path:
        # A folder per attempt: an attempt given up on by Temporal may still be running.
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        prefix = f"{request.workflow_id}-{request.step.value}-v{request.version}-"
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch_dir))

    def _publish(
        self, request: ExecutionRequest, outcome: ExecutionOutcome
    ) -> tuple[dict[str, float | str] | None, list[ArtifactRef]]:
        """Replace the step version's artifacts with this attempt's; return metrics and refs."""
        with self.store.replace_version(
            request.workflow_id, request.step, request.version
        ) as stage:
            for name in outcome.output_files:
                target = stage / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(outcome.output_dir / name, target)
            # Written last: the service's own files win over outputs that reuse their names.
            (stage / CODE_FILE).write_text(request.code, encoding="utf-8")
            (stage / STDOUT_FILE).write_text(outcome.stdout, encoding="utf-8")
            (stage / STDERR_FILE).write_text(outcome.stderr, encoding="utf-8")
            reported = _read_metrics(stage / METRICS_FILE)
        if reported is None and outcome.metrics is not None:
            reported = outcome.metrics
        metrics = flatten_metrics(reported) if reported is not None else None
        return metrics, self.store.list(request.workflow_id, request.step, request.version)


def _read_metrics(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def flatten_metrics(data: dict[str, Any], prefix: str = "") -> dict[str, float | str]:
    """Numbers and short strings, nested keys joined with dots; lists stay in the artifact.

    NaN and infinities become strings: they are not valid JSON and would not survive the trip
    through Temporal's payloads.
    """
    flat: dict[str, float | str] = {}
    for key, value in data.items():
        if len(flat) >= MAX_METRICS:
            break
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, int | float):
            flat[name] = float(value) if math.isfinite(value) else str(value)
        elif isinstance(value, str):
            flat[name] = value[:MAX_METRIC_TEXT]
        elif isinstance(value, dict):
            nested = flatten_metrics(value, f"{name}.")
            flat.update(list(nested.items())[: MAX_METRICS - len(flat)])
    return flat
