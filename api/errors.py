"""The one place where failures become HTTP statuses with JSON bodies a person can act on."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    status_code = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    """No credentials, or ones nobody issued; carries the WWW-Authenticate challenge."""

    status_code = 401


class Forbidden(ApiError):
    """A known caller without the role (or ownership) the action needs."""

    status_code = 403


class RunNotFound(ApiError):
    status_code = 404


class WrongRunState(ApiError):
    status_code = 409


class TooManyRequests(ApiError):
    """Over a rate limit; carries Retry-After."""

    status_code = 429


class TemporalUnavailable(ApiError):
    status_code = 503


class ServiceUnavailable(ApiError):
    """A dependency other than Temporal (e.g. the rate-limit store) is not answering."""

    status_code = 503


def _location(loc: tuple[object, ...] | list[object]) -> str:
    return ".".join(str(part) for part in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        summary = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors)
        fields = [
            {"field": _location(e["loc"]), "message": e["msg"], "type": e["type"]} for e in errors
        ]
        return JSONResponse(
            {"detail": f"Invalid request: {summary}", "errors": fields}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep Starlette's headers: a 405 must say which methods are allowed (`Allow`).
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
