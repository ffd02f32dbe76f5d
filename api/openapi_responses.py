"""The `responses=` a route declares, so OpenAPI shows every error status with its real body."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.schemas import ErrorBody

_DESCRIPTIONS = {
    400: "The request cannot be used as given (e.g. a page_token this API did not return)",
    401: "No credentials, or credentials nobody issued",
    403: "The caller lacks the role (or ownership) this call needs",
    404: "No run (or artifact) with this id",
    409: "The run is not in a state that allows this",
    422: "The request is invalid; `errors` names each field",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "Temporal, the worker or another dependency is not answering",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "How to authenticate (RFC 6750)",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds until the limit lets a call through",
            "schema": {"type": "string"},
        }
    },
}

# What any route that declares `require_role` can answer, whatever it does.
GUARDED = (401, 403, 422, 429, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these statuses, each with the ErrorBody schema and its headers."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        response: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[status] = response
    return responses


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def document_errors_everywhere(app: FastAPI) -> None:
    """A safety net under the routes' own `responses=`: every 422 shows the body our handler
    really returns (ErrorBody, not FastAPI's default), and every operation that takes
    credentials lists 401, 403 and 429, so no route's documentation can forget them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components.setdefault("ErrorBody", body)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"] = _error_response(422)
                if operation.get("security"):
                    for status in (401, 403, 429):
                        responses.setdefault(str(status), _error_response(status))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
