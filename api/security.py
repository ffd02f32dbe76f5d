"""Who is calling and what they may do: principals, roles and the FastAPI dependency for them.

Interface stub: `AUTH_MODE=none` only. The api_key and oidc modes fill in `authenticate`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum

from fastapi import Request
from pydantic import BaseModel


class Role(StrEnum):
    VIEWER = "viewer"  # read runs and artifacts
    OPERATOR = "operator"  # start runs, cancel their own
    APPROVER = "approver"  # approve and reject
    ADMIN = "admin"  # everything, all runs


class Principal(BaseModel):
    name: str
    roles: frozenset[Role]
    # False for AUTH_MODE=none and for names typed into a CLI signal payload.
    authenticated: bool = True

    def has(self, role: Role) -> bool:
        # Every role reads; admin does everything.
        return Role.ADMIN in self.roles or role in self.roles or role == Role.VIEWER

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles


ANONYMOUS = Principal(name="anonymous", roles=frozenset({Role.ADMIN}), authenticated=False)


async def authenticate(request: Request) -> Principal:
    return ANONYMOUS


def require_role(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A route dependency: the caller's principal, who must hold `role`."""

    async def dependency(request: Request) -> Principal:
        return await authenticate(request)

    return dependency
