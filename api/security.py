"""Who is calling and what they may do: the FastAPI dependency every route declares.

`require_role(role)` authenticates the caller (AUTH_MODE none, api_key or oidc), counts the call
against the rate limits, and checks the role. Declared on the route, it also puts the security
schemes into OpenAPI, so the docs show how to call and nobody forgets a check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Forbidden, Unauthorized
from api.keys import KeyRegistry
from api.oidc import OidcVerifier
from api.principals import ANONYMOUS, Principal, Role
from api.rate_limits import RateLimiter
from settings import Settings

__all__ = ["ANONYMOUS", "AccessControl", "Principal", "Role", "require_role"]

SESSION_COOKIE = "orchestrator_session"

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key (AUTH_MODE=api_key) or an OIDC access token (AUTH_MODE=oidc).",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (AUTH_MODE=api_key)."
)
session_cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=(
        "The web desk's sign-in cookie: the API key (AUTH_MODE=api_key) or the access token "
        "from the desk's sign-in with the identity provider (AUTH_MODE=oidc)."
    ),
)


@dataclass(frozen=True)
class Credentials:
    """What the caller presented; any of them may be missing."""

    bearer: str | None
    api_key: str | None
    cookie: str | None


class Authenticator(Protocol):
    async def authenticate(self, credentials: Credentials) -> Principal:
        """The caller's principal, or Unauthorized."""


def _challenge(description: str) -> Unauthorized:
    return Unauthorized(description, headers={"WWW-Authenticate": 'Bearer realm="orchestrator"'})


class NoAuthentication:
    """AUTH_MODE=none: everyone is the anonymous admin (loopback only, see bind_check)."""

    async def authenticate(self, credentials: Credentials) -> Principal:
        return ANONYMOUS


class ApiKeyAuthentication:
    def __init__(self, registry: KeyRegistry) -> None:
        self.registry = registry

    async def authenticate(self, credentials: Credentials) -> Principal:
        # An explicit header wins over the browser's cookie, so a script's key is what counts.
        key = credentials.api_key or credentials.bearer or credentials.cookie
        if not key:
            raise _challenge(
                "No API key: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`."
            )
        principal = self.registry.principal_for(key)
        if principal is None:
            raise _challenge("This API key is not known; ask an admin for a key.")
        return principal


class OidcAuthentication:
    def __init__(self, verifier: OidcVerifier) -> None:
        self.verifier = verifier

    async def authenticate(self, credentials: Credentials) -> Principal:
        # The desk's cookie holds an access token from its sign-in (api/ui/oidc_login.py).
        token = credentials.bearer or credentials.cookie
        if not token:
            raise _challenge(
                "No bearer token: send your identity provider's access token as "
                "`Authorization: Bearer <token>`."
            )
        return await self.verifier.principal_for(token)


def authenticator_for(settings: Settings) -> Authenticator:
    if settings.auth_mode == "api_key":
        if settings.api_keys_file is None:
            raise ValueError(
                "AUTH_MODE=api_key needs API_KEYS_FILE (create keys with python -m api.keys)."
            )
        return ApiKeyAuthentication(KeyRegistry.from_file(settings.api_keys_file))
    if settings.auth_mode == "oidc":
        return OidcAuthentication(OidcVerifier(settings))
    return NoAuthentication()


@dataclass
class AccessControl:
    """Kept on `app.state.access`; built once from the settings when the app is created."""

    authenticator: Authenticator
    rate_limiter: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessControl:
        return cls(authenticator_for(settings), RateLimiter(settings))


def _client_address(request: Request) -> str:
    # Behind a proxy, run uvicorn with --proxy-headers so this is the caller, not the proxy.
    return f"address {request.client.host}" if request.client else "address unknown"


def require_role(role: Role, *, starts_run: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A route dependency: the caller's principal, who must hold `role`.

    Every call counts against RATE_LIMIT_DEFAULT, and with `starts_run` against
    RATE_LIMIT_START too; failed logins count against the client's address.
    """

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        api_key: Annotated[str | None, Security(api_key_scheme)],
        cookie: Annotated[str | None, Security(session_cookie_scheme)],
    ) -> Principal:
        access: AccessControl = request.app.state.access
        credentials = Credentials(bearer.credentials if bearer else None, api_key, cookie)
        try:
            principal = await access.authenticator.authenticate(credentials)
        except Unauthorized:
            # Guessing keys costs the guesser's address its quota.
            await access.rate_limiter.hit(_client_address(request), starts_run=starts_run)
            raise
        caller = f"principal {principal.name}" if principal.authenticated else None
        await access.rate_limiter.hit(caller or _client_address(request), starts_run=starts_run)
        if not principal.has(role):
            raise Forbidden(
                f"{principal.name!r} lacks the {role.value!r} role this call needs "
                f"(has: {', '.join(sorted(principal.roles)) or 'no roles'}); ask an admin."
            )
        return principal

    return dependency


async def limit_by_address(request: Request) -> None:
    """Rate limit for the open endpoints (health): per client address, no credentials."""
    access: AccessControl = request.app.state.access
    await access.rate_limiter.hit(_client_address(request))
