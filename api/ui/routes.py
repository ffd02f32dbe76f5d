"""The reviewer's desk: server-rendered pages under /ui that call RunService like the API does.

Pages read with the viewer role and decide with the approver role, through the same
`require_role` dependency as the REST routes; the login form only stores the API key in an
HttpOnly, SameSite=Strict cookie that `require_role` accepts. Forms that change anything also
check that they were posted from this host (Origin, else Referer).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader

from activities.artifacts import ArtifactStore
from api.errors import Forbidden, Unauthorized, WrongRunState
from api.runs import RunService
from api.security import (
    SESSION_COOKIE,
    AccessControl,
    Credentials,
    Principal,
    Role,
    limit_by_address,
    require_role,
)
from api.ui.code_views import highlight_stylesheet
from api.ui.run_page import build_run_page
from settings import Settings
from workflows.models import RunStatus, Step

# Autoescaping everywhere: goals, feedback, messages and code are all text others wrote.
environment = Environment(
    loader=PackageLoader("api.ui", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=environment)

router = APIRouter(prefix="/ui", include_in_schema=False)

INBOX_LIMIT = 50
RECENT_LIMIT = 20
FEEDBACK_LIMIT = 4000  # as RejectRequest.feedback
STEP_ORDER = list(Step)

Viewer = Annotated[Principal, Depends(require_role(Role.VIEWER))]
Approver = Annotated[Principal, Depends(require_role(Role.APPROVER))]


def _runs(request: Request) -> RunService:
    service: RunService = request.app.state.runs
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def desk_path(request: Request, path: str) -> str:
    """A path on this server, under the proxy prefix the app was mounted at."""
    return f"{request.scope.get('root_path', '')}{path}"


def artifact_path(request: Request, workflow_id: str, name: str) -> str:
    return desk_path(request, f"/workflow/{quote(workflow_id)}/artifacts/{quote(name)}")


def run_path(request: Request, workflow_id: str) -> str:
    return desk_path(request, f"/ui/runs/{quote(workflow_id)}")


def safe_next(request: Request, target: str | None) -> str:
    """Where to go after logging in: only a desk page on this server, never another site."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return desk_path(request, target)
    return desk_path(request, "/ui/inbox")


def require_same_origin(request: Request) -> None:
    """Refuse a state-changing form posted from another site (CSRF), beside SameSite=Strict."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    source = origin if origin and origin != "null" else request.headers.get("referer")
    if not source:
        raise Forbidden(
            "This form must come from the desk's own page, and the browser sent neither Origin "
            "nor Referer; reload the page and send it again."
        )
    if urlsplit(source).netloc.lower() != host.lower():
        raise Forbidden(
            f"This form was sent from {urlsplit(source).netloc or source!r}, not from this "
            f"server ({host!r}); open the desk at its own address and send it again."
        )


def render_page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    settings = _settings(request)
    base = {
        "root": request.scope.get("root_path", ""),
        "auth_mode": settings.auth_mode,
        "oidc_login": settings.desk_oidc_login,
        "Step": Step,
        "RunStatus": RunStatus,
    }
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    # Pages carry decisions and data: never cache them, never frame them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = DESK_CSP
    return response


# Everything the desk needs comes from this server; artifacts are framed sandboxed from it too.
DESK_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)


# --- Login -------------------------------------------------------------------------------------


@router.get("", response_class=RedirectResponse)
async def desk_home(request: Request) -> RedirectResponse:
    return RedirectResponse(desk_path(request, "/ui/inbox"), status_code=303)


@router.get("/login")
async def login_page(
    request: Request,
    next_page: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
    expired: bool = False,
) -> Response:
    error = "Your key was not accepted (or was revoked); sign in again." if expired else None
    return render_page(request, "login.html", {"next": next_page or "", "error": error})


@router.post("/login")
async def log_in(
    request: Request,
    api_key: Annotated[str, Form(max_length=500)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "",
) -> Response:
    require_same_origin(request)
    settings = _settings(request)
    if settings.auth_mode != "api_key":
        # Nothing to store: with no authentication, or with OIDC bearer tokens, a key cookie
        # would never be read.
        return RedirectResponse(safe_next(request, next_page), status_code=303)
    key = api_key.strip()
    access: AccessControl = request.app.state.access
    try:
        await access.authenticator.authenticate(Credentials(None, key, None))
    except Unauthorized:
        await limit_by_address(request)  # failed logins spend the address's quota
        context = {"next": next_page, "error": "That API key is not known; check it and retry."}
        return render_page(request, "login.html", context, status_code=401)
    return signed_in(request, next_page, key, samesite="strict")


def signed_in(
    request: Request,
    next_page: str | None,
    credential: str,
    samesite: Literal["strict", "lax"],
    max_age: int | None = None,
) -> RedirectResponse:
    """On to the page asked for, with the credential in the desk's HttpOnly cookie."""
    response = RedirectResponse(safe_next(request, next_page), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        credential,
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https",
        path=desk_path(request, "/") or "/",
        max_age=max_age,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/logout")
async def log_out(request: Request) -> RedirectResponse:
    require_same_origin(request)
    response = RedirectResponse(desk_path(request, "/ui/login"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=desk_path(request, "/") or "/")
    return response


@router.get("/highlight.css")
async def highlight_css() -> PlainTextResponse:
    return PlainTextResponse(
        highlight_stylesheet(),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


# --- Pages -------------------------------------------------------------------------------------


@router.get("/inbox")
async def inbox(request: Request, principal: Viewer) -> Response:
    """Runs waiting for a decision: all of them for an approver, else the caller's own."""
    runs = _runs(request)
    # RunService decides visibility: approvers see every waiting run, others their own.
    waiting, recent = await asyncio.gather(
        runs.list_runs(RunStatus.AWAITING_APPROVAL, INBOX_LIMIT, None, principal),
        runs.list_runs(None, RECENT_LIMIT, None, principal),
    )
    context = {
        "principal": principal,
        "awaiting": waiting.workflows,
        "mine_only": not principal.has(Role.APPROVER),
        "recent": recent.workflows,
        "run_path": lambda workflow_id: run_path(request, workflow_id),
    }
    return render_page(request, "inbox.html", context)


async def _run_page(
    request: Request,
    principal: Principal,
    workflow_id: str,
    *,
    against: int | None = None,
    diff_mode: str = "unified",
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    feedback: str = "",
) -> Response:
    state = await _runs(request).state(workflow_id, principal)
    store: ArtifactStore = request.app.state.artifacts
    artifacts = await asyncio.to_thread(store.list, workflow_id)
    page = await asyncio.to_thread(build_run_page, state, store, artifacts, against)
    waiting = state.status == RunStatus.AWAITING_APPROVAL and state.code_context.eda_code
    context = {
        "principal": principal,
        "page": page,
        "state": state,
        "can_decide": bool(waiting) and principal.has(Role.APPROVER),
        "diff_mode": diff_mode,
        "notice": notice,
        "error": error,
        "feedback": feedback,
        "step_order": STEP_ORDER,
        "step_index": STEP_ORDER.index(state.current_step),
        "events_url": desk_path(request, f"/workflow/{quote(workflow_id)}/events"),
        "run_path": run_path(request, workflow_id),
        "artifact_path": lambda name: artifact_path(request, workflow_id, name),
    }
    return render_page(request, "run.html", context, status_code=status_code)


NOTICES = {
    "approved": "Approved. The run executes the EDA code now; progress appears below.",
    "rejected": "Rejected. The Data Engineering agent is writing a new version with your feedback.",
}


@router.get("/runs/{workflow_id}")
async def run_page(
    request: Request,
    workflow_id: str,
    principal: Viewer,
    against: Annotated[int | None, Query(ge=1)] = None,
    diff: Annotated[str, Query(pattern="^(unified|side)$")] = "unified",
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _run_page(
        request,
        principal,
        workflow_id,
        against=against,
        diff_mode=diff,
        notice=NOTICES.get(notice or ""),
    )


@router.post("/runs/{workflow_id}/approve")
async def approve_from_desk(
    request: Request,
    workflow_id: str,
    principal: Approver,
    version: Annotated[int, Form(ge=1)],
    target: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    require_same_origin(request)
    try:
        await _runs(request).approve(workflow_id, version, principal, target=target or None)
    except (WrongRunState, Forbidden) as err:
        return await _run_page(
            request, principal, workflow_id, error=err.detail, status_code=err.status_code
        )
    return RedirectResponse(f"{run_path(request, workflow_id)}?notice=approved", status_code=303)


@router.post("/runs/{workflow_id}/reject")
async def reject_from_desk(
    request: Request,
    workflow_id: str,
    principal: Approver,
    version: Annotated[int, Form(ge=1)],
    feedback: Annotated[str, Form(max_length=FEEDBACK_LIMIT)] = "",
) -> Response:
    require_same_origin(request)
    try:
        await _runs(request).reject(workflow_id, feedback.strip() or None, version, principal)
    except (WrongRunState, Forbidden) as err:
        # Keep what they typed: the feedback may still apply to the version now shown.
        return await _run_page(
            request,
            principal,
            workflow_id,
            error=err.detail,
            status_code=err.status_code,
            feedback=feedback,
        )
    return RedirectResponse(f"{run_path(request, workflow_id)}?notice=rejected", status_code=303)
