"""The desk's sign-in with the identity provider (AUTH_MODE=oidc and OIDC_CLIENT_ID set).

An authorization code flow with PKCE, through Authlib: /ui/login/oidc sends the browser to the
provider; /ui/login/callback checks the state, exchanges the code with the PKCE verifier and
checks the ID token (signature, issuer, audience, nonce). The access token then goes into the
desk's HttpOnly cookie only if the API itself accepts it, and `require_role` verifies it on
every request exactly as it verifies a bearer header: the cookie grants nothing the token would
not, and it stops working when the token expires.

The flow's state rides in a signed cookie that lives ten minutes (Starlette's sessions, keyed
by DESK_SESSION_SECRET), so any API replica can finish a sign-in another one began.
"""

from __future__ import annotations

from typing import Annotated

import httpx
from authlib.integrations.httpx_client._compat import httpx2 as authlib_http
from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from starlette.middleware.sessions import SessionMiddleware

from api.errors import Unauthorized
from api.security import SESSION_COOKIE, AccessControl, Credentials, limit_by_address
from api.ui.routes import desk_path, render_page, signed_in
from settings import Settings

# Authlib talks to the provider through httpx2 when it is installed, else httpx.
TRANSPORT_ERRORS = (httpx.HTTPError, authlib_http.HTTPError)

LOGIN_STATE_COOKIE = "orchestrator_login"
LOGIN_STATE_SECONDS = 600
_NEXT = "desk_next"

router = APIRouter(prefix="/ui/login", include_in_schema=False)


class DeskLoginConfigError(ValueError):
    """OIDC_CLIENT_ID without what the sign-in needs beside it."""


def install_oidc_login(app: FastAPI, settings: Settings) -> None:
    """Add the sign-in routes when configured; a half configuration stops the API at start."""
    if not settings.desk_oidc_login:
        return
    if settings.desk_session_secret is None or not settings.desk_session_secret.get_secret_value():
        raise DeskLoginConfigError(
            "OIDC_CLIENT_ID turns on the desk's sign-in, which needs DESK_SESSION_SECRET: any "
            "long random string (`openssl rand -hex 32`), the same on every API replica."
        )
    assert settings.oidc_issuer  # OidcVerifier refused to start without it
    oauth = OAuth()
    oauth.register(
        "desk",
        client_id=settings.oidc_client_id,
        client_secret=(
            settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
        ),
        server_metadata_url=(
            settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
        ),
        client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
    )
    app.state.desk_oauth = oauth
    app.include_router(router)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.desk_session_secret.get_secret_value(),
        session_cookie=LOGIN_STATE_COOKIE,
        max_age=LOGIN_STATE_SECONDS,
        same_site="lax",  # it must come back with the provider's redirect
    )


@router.get("/oidc")
async def start_sign_in(
    request: Request, next_page: Annotated[str, Query(alias="next", max_length=2000)] = ""
) -> Response:
    request.session[_NEXT] = next_page
    redirect_uri = str(request.url_for("finish_sign_in"))
    try:
        response: Response = await request.app.state.desk_oauth.desk.authorize_redirect(
            request, redirect_uri
        )
    except (OAuthError, *TRANSPORT_ERRORS) as err:
        return _unreachable(request, err)
    return response


@router.get("/callback", name="finish_sign_in")
async def finish_sign_in(request: Request) -> Response:
    try:
        token = await request.app.state.desk_oauth.desk.authorize_access_token(request)
    except OAuthError as err:
        # A forged or replayed callback, a denied consent, or a code the provider refused.
        return _failed(request, f"The sign-in did not complete ({err.error}: {err.description})")
    except TRANSPORT_ERRORS as err:
        return _unreachable(request, err)
    access_token = str(token.get("access_token") or "")
    access: AccessControl = request.app.state.access
    try:
        await access.authenticator.authenticate(Credentials(access_token, None, None))
    except Unauthorized as err:
        await limit_by_address(request)  # refused sign-ins spend the address's quota
        return _failed(
            request,
            f"The identity provider's access token is not one this service accepts "
            f"({err.detail}); ask the operator to check OIDC_AUDIENCE and OIDC_ROLES_CLAIM",
        )
    expires_in = str(token.get("expires_in", ""))
    # Lax, not Strict: the browser arrives here from the provider's site, and a Strict cookie
    # would be withheld on the redirect that follows. Forms still check their origin.
    return signed_in(
        request,
        request.session.pop(_NEXT, ""),
        access_token,
        samesite="lax",
        max_age=int(expires_in) if expires_in.isdigit() else None,
    )


def _unreachable(request: Request, err: Exception) -> Response:
    settings: Settings = request.app.state.settings
    return _failed(
        request,
        f"The identity provider at {settings.oidc_issuer} could not be reached ({err}); "
        "try again in a moment, or ask the operator to check OIDC_ISSUER",
        status_code=503,
    )


def _failed(request: Request, reason: str, status_code: int = 401) -> Response:
    context = {"next": "", "error": f"{reason}. Sign in again."}
    response = render_page(request, "login.html", context, status_code=status_code)
    response.delete_cookie(SESSION_COOKIE, path=desk_path(request, "/") or "/")
    return response
