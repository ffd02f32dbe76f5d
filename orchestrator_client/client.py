"""A typed Python client for the Orchestrator Service's REST API: one method per endpoint.

    from orchestrator_client import OrchestratorClient

    with OrchestratorClient.from_env() as client:
        run = client.start("Predict churn", dataset_url="https://example.com/churn.csv")
        print(client.status(run.workflow_id).status)

Responses are the service's own pydantic models (api.schemas, workflows.models); errors are
`orchestrator_client.errors.ApiError` subclasses carrying the server's `detail`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, connect_sse
from pydantic import BaseModel, ConfigDict, ValidationError

from api.schemas import ActionResponse, ArtifactList, Health, RunList, StartResponse
from orchestrator_client.errors import ApiError, NotFound, ServiceUnreachable, error_for
from workflows.models import RunState, RunStatus, RunStatusView

DEFAULT_URL = "http://localhost:8000"
URL_VARIABLE = "ORCHESTRATOR_URL"
KEY_VARIABLE = "ORCHESTRATOR_API_KEY"

ModelT = TypeVar("ModelT", bound=BaseModel)


class DatasetUpload(BaseModel):
    """POST /datasets: the id to start a run with. (The route's own model lives beside the route,
    whose imports a command line should not pay for; unknown fields are kept.)"""

    model_config = ConfigDict(extra="allow")
    dataset_id: str
    size_bytes: int | None = None
    sha256: str | None = None
    filename: str | None = None


class Prediction(BaseModel):
    """POST /workflow/{id}/predict: one prediction per row, and for a classifier each class's
    probability per row."""

    model_config = ConfigDict(extra="allow")
    predictions: list[Any]
    classes: list[Any] | None = None
    probabilities: list[dict[str, float | None]] | None = None
    model: str | None = None


class ServerEvent(BaseModel):
    """One Server-Sent Event from GET /workflow/{id}/events; `data` is parsed JSON when it is JSON."""

    event: str = "message"
    data: Any = None
    id: str | None = None


class EventsUnavailable(NotFound):
    """The server has no events stream for this run (an older server): poll the status instead."""


class OrchestratorClient:
    """Synchronous client; use it as a context manager, or call close()."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "orchestrator-client/0.1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> OrchestratorClient:
        """ORCHESTRATOR_URL (default http://localhost:8000) and ORCHESTRATOR_API_KEY."""
        return cls(
            os.environ.get(URL_VARIABLE) or DEFAULT_URL, os.environ.get(KEY_VARIABLE), **kwargs
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- Runs --------------------------------------------------------------------------------

    def health(self) -> Health:
        response = self._send("GET", "/health", accept={503})
        return self._parse(Health, response)

    def upload_dataset(self, path: str | Path) -> DatasetUpload:
        """Send a local CSV to the service; start a run with the returned dataset_id."""
        file = Path(path)
        with file.open("rb") as handle:
            response = self._send(
                "POST", "/datasets", files={"file": (file.name, handle, "text/csv")}, timeout=None
            )
        return self._parse(DatasetUpload, response)

    def start(
        self,
        user_goal: str,
        *,
        dataset_url: str | None = None,
        dataset_id: str | None = None,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> StartResponse:
        """Start a run on a dataset URL (or a path the worker can read) or an uploaded dataset."""
        if (dataset_url is None) == (dataset_id is None):
            raise ValueError("give exactly one of dataset_url and dataset_id")
        body: dict[str, Any] = {"user_goal": user_goal}
        if dataset_url is not None:
            body["dataset_url"] = dataset_url
        if dataset_id is not None:
            body["dataset_id"] = dataset_id
        if workflow_id is not None:
            body["workflow_id"] = workflow_id
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._model(StartResponse, "POST", "/workflow/start", json=body, headers=headers)

    def list_runs(
        self, status: RunStatus | str | None = None, limit: int = 50, page_token: str | None = None
    ) -> RunList:
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = str(status)
        if page_token:
            params["page_token"] = page_token
        return self._model(RunList, "GET", "/workflows", params=params)

    def status(self, workflow_id: str) -> RunStatusView:
        return self._model(RunStatusView, "GET", f"/workflow/{_segment(workflow_id)}/status")

    def state(self, workflow_id: str) -> RunState:
        """The full state: plan, generated code per step, results, review, usage."""
        return self._model(RunState, "GET", f"/workflow/{_segment(workflow_id)}")

    def approve(
        self, workflow_id: str, version: int | None = None, target: str | None = None
    ) -> ActionResponse:
        """Approve the waiting EDA code; with `version`, only if that is the version waiting.

        With `target`, predict that column: a plan unsure of its target needs one, and a
        target other than the plan's re-plans the run (the new code waits for approval).
        """
        body: dict[str, Any] = {}
        if version is not None:
            body["version"] = version
        if target is not None:
            body["target"] = target
        return self._model(
            ActionResponse, "POST", f"/workflow/{_segment(workflow_id)}/approve", json=body or None
        )

    def reject(
        self,
        workflow_id: str,
        feedback: str | None = None,
        version: int | None = None,
        target: str | None = None,
    ) -> ActionResponse:
        body: dict[str, Any] = {}
        if feedback is not None:
            body["feedback"] = feedback
        if version is not None:
            body["version"] = version
        if target is not None:
            body["target"] = target
        return self._model(
            ActionResponse, "POST", f"/workflow/{_segment(workflow_id)}/reject", json=body or None
        )

    def cancel(self, workflow_id: str) -> ActionResponse:
        return self._model(ActionResponse, "POST", f"/workflow/{_segment(workflow_id)}/cancel")

    # --- Artifacts and predictions -----------------------------------------------------------

    def artifacts(self, workflow_id: str) -> ArtifactList:
        return self._model(ArtifactList, "GET", f"/workflow/{_segment(workflow_id)}/artifacts")

    def read_artifact(self, workflow_id: str, name: str) -> bytes:
        return self._send("GET", _artifact_path(workflow_id, name)).content

    def download(self, workflow_id: str, name: str, destination: str | Path) -> Path:
        """Stream one artifact to `destination` (a file path); returns it."""
        target = Path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            with self._stream("GET", _artifact_path(workflow_id, name)) as response:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def predict(
        self,
        workflow_id: str,
        *,
        rows: list[dict[str, Any]] | None = None,
        csv_path: str | Path | None = None,
    ) -> Prediction:
        """Predictions of the run's trained model, for JSON rows or the rows of a CSV file."""
        if (rows is None) == (csv_path is None):
            raise ValueError("give exactly one of rows and csv_path")
        path = f"/workflow/{_segment(workflow_id)}/predict"
        if rows is not None:
            return self._model(Prediction, "POST", path, json={"rows": rows}, timeout=None)
        file = Path(str(csv_path))
        with file.open("rb") as handle:
            response = self._send(
                "POST", path, files={"file": (file.name, handle, "text/csv")}, timeout=None
            )
        return self._parse(Prediction, response)

    # --- Live progress -----------------------------------------------------------------------

    def events(self, workflow_id: str, read_timeout: float = 60.0) -> Iterator[ServerEvent]:
        """The run's Server-Sent Events, as they come; ends when the server closes the stream.

        Raises EventsUnavailable when the server has no such endpoint (404 while the run exists).
        """
        path = f"/workflow/{_segment(workflow_id)}/events"
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        try:
            with connect_sse(self._http, "GET", path, timeout=timeout) as source:
                response = source.response
                if response.status_code == 404:
                    response.read()
                    error = error_for(response)
                    self.status(workflow_id)  # raises NotFound when the run is what is missing
                    raise EventsUnavailable(error.detail)
                if not response.is_success:
                    response.read()
                    raise error_for(response)
                for sse in source.iter_sse():
                    yield ServerEvent(event=sse.event, data=_maybe_json(sse.data), id=sse.id)
        except SSEError as err:  # answered, but not with an event stream
            raise EventsUnavailable(f"{path} is not an event stream: {err}") from err
        except httpx.TransportError as err:
            raise ServiceUnreachable(_unreachable(self.base_url, err)) from err

    # --- Plumbing ----------------------------------------------------------------------------

    def _model(self, model: type[ModelT], method: str, path: str, **kwargs: Any) -> ModelT:
        return self._parse(model, self._send(method, path, **kwargs))

    def _parse(self, model: type[ModelT], response: httpx.Response) -> ModelT:
        method, path = response.request.method, response.request.url.path
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as err:
            # A proxy's HTML page or a server of another version: say so rather than crash.
            raise ApiError(
                f"{method} {path} answered {response.status_code} with a body this client "
                f"does not understand ({type(err).__name__}); is {self.base_url} the "
                "Orchestrator API, and of a matching version?",
                response.status_code,
            ) from err

    def _send(
        self, method: str, path: str, *, accept: set[int] | None = None, **kwargs: Any
    ) -> httpx.Response:
        if "timeout" in kwargs and kwargs["timeout"] is None:
            # Uploads and scoring take as long as the data is big: no read limit, only connect.
            kwargs["timeout"] = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ServiceUnreachable(_unreachable(self.base_url, err)) from err
        if not response.is_success and response.status_code not in (accept or set()):
            raise error_for(response)
        return response

    def _stream(self, method: str, path: str) -> _StreamedResponse:
        return _StreamedResponse(self, method, path)


class _StreamedResponse:
    """A streamed response that raises the right ApiError before any byte is read."""

    def __init__(self, client: OrchestratorClient, method: str, path: str) -> None:
        self._context = client._http.stream(method, path)
        self._base_url = client.base_url

    def __enter__(self) -> httpx.Response:
        try:
            response = self._context.__enter__()
        except httpx.TransportError as err:
            raise ServiceUnreachable(_unreachable(self._base_url, err)) from err
        if not response.is_success:
            response.read()
            error = error_for(response)
            self._context.__exit__(None, None, None)
            raise error
        return response

    def __exit__(self, *exc_info: Any) -> None:
        self._context.__exit__(*exc_info)


def _segment(value: str) -> str:
    # An id is one path segment; quoting stops "../" or "?" from addressing another route.
    return quote(value, safe="")


def _artifact_path(workflow_id: str, name: str) -> str:
    quoted = "/".join(quote(part, safe="") for part in name.split("/"))
    return f"/workflow/{_segment(workflow_id)}/artifacts/{quoted}"


def _maybe_json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


def _unreachable(base_url: str, err: Exception) -> str:
    return (
        f"Cannot reach the Orchestrator API at {base_url} ({type(err).__name__}: {err}). "
        f"Is it running? Set {URL_VARIABLE} or --url to where it listens."
    )


__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "DatasetUpload",
    "EventsUnavailable",
    "OrchestratorClient",
    "Prediction",
    "ServerEvent",
]
