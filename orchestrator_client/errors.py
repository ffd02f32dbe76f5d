"""The errors the client raises: one class per HTTP status the service uses, carrying its detail."""

from __future__ import annotations

import httpx


class ApiError(Exception):
    """The service refused or failed a call; `detail` is its message, meant for a person."""

    status_code: int | None = None
    exit_code = 1  # what the `orchestrator` command exits with

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code


class Unauthorized(ApiError):
    status_code = 401
    exit_code = 3


class Forbidden(ApiError):
    status_code = 403
    exit_code = 3


class NotFound(ApiError):
    status_code = 404
    exit_code = 4


class Conflict(ApiError):
    """The run is not in a state that allows this (e.g. approving a run that is not waiting)."""

    status_code = 409
    exit_code = 5


class InvalidRequest(ApiError):
    status_code = 422
    exit_code = 6


class RateLimited(ApiError):
    status_code = 429
    exit_code = 7

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceUnavailable(ApiError):
    """Temporal or the worker is not answering."""

    status_code = 503
    exit_code = 8


class ServiceUnreachable(ApiError):
    """No HTTP answer at all: wrong ORCHESTRATOR_URL, or the API is not running."""

    exit_code = 9


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls  # type: ignore[misc]
    for cls in (Unauthorized, Forbidden, NotFound, Conflict, InvalidRequest, ServiceUnavailable)
}


def _detail_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if detail is not None:  # FastAPI's default validation shape: a list of errors
        return str(detail)
    return response.reason_phrase


def error_for(response: httpx.Response) -> ApiError:
    """The ApiError subclass for a non-2xx response, with the server's own message."""
    detail = _detail_of(response)
    status = response.status_code
    if status == 429:
        retry_after = response.headers.get("Retry-After")
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:
            seconds = None
        return RateLimited(detail, seconds)
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(detail)
    return ApiError(f"HTTP {status}: {detail}", status)
