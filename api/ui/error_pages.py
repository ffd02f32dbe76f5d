"""Errors on desk pages as a person expects them: a 401 goes to the login page, others get HTML.

The REST routes answer errors with JSON (api/errors.py). Under /ui this middleware turns those
answers into a redirect to /ui/login (401) or a page stating the same detail (403, 404, 409,
429, 503), whatever raised them, so every check stays in the one place that makes it.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.security import SESSION_COOKIE

Template = Any  # jinja2.Template; kept loose so this module does not own the environment

DESK_PREFIX = "/ui"
STATIC_PREFIX = "/ui/static"
MAX_ERROR_BODY = 64 * 1024  # JSON error bodies are small; anything bigger passes through


def _desk_path(scope: Scope) -> str | None:
    """The path relative to the app when it is a desk page, else None."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path == DESK_PREFIX or path.startswith(DESK_PREFIX + "/"):
        return None if path.startswith(STATIC_PREFIX) else path
    return None


class DeskErrorPages:
    def __init__(self, app: ASGIApp, error_template: Template) -> None:
        self.app = app
        self.error_template = error_template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _desk_path(scope) is None:
            await self.app(scope, receive, send)
            return
        held: MutableMapping[str, Any] | None = None
        chunks: list[bytes] = []

        async def intercept(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                if message["status"] >= 400 and headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False) and sum(map(len, chunks)) < MAX_ERROR_BODY:
                    return
                replacement = self._replacement(scope, held["status"], b"".join(chunks))
                retry_after = Headers(raw=held.get("headers", [])).get("retry-after")
                if retry_after:
                    replacement.headers["Retry-After"] = retry_after
                held = None
                await replacement(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, intercept)

    def _replacement(self, scope: Scope, status: int, body: bytes) -> Response:
        request = Request(scope)
        root = scope.get("root_path", "")
        if status == 401:
            target = _desk_path(scope) or "/ui/inbox"
            if request.url.query:
                target += f"?{request.url.query}"
            query = {"next": target}
            had_cookie = SESSION_COOKIE in request.cookies
            if had_cookie:
                query["expired"] = "1"
            response = RedirectResponse(f"{root}/ui/login?{urlencode(query)}", status_code=303)
            if had_cookie:
                response.delete_cookie(SESSION_COOKIE, path=f"{root}/" if root else "/")
            return response
        try:
            detail = str(json.loads(body).get("detail", ""))
        except (ValueError, AttributeError):
            detail = ""
        html = self.error_template.render(
            root=root, status=status, detail=detail or "Something went wrong.", principal=None
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
