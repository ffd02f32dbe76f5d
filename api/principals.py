"""Who a caller is and what roles they hold; shared by the API, the key file and RunService."""

from __future__ import annotations

from enum import StrEnum

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
        # Admin does everything; any role also reads. No role at all (an OIDC user the
        # identity provider gave none of ours) may do nothing.
        if Role.ADMIN in self.roles or role in self.roles:
            return True
        return role == Role.VIEWER and bool(self.roles)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    @property
    def reads_every_run(self) -> bool:
        """Viewers, approvers (who review anyone's runs) and admins read any run; someone who
        is only an operator reads the runs they started."""
        return bool(self.roles & {Role.ADMIN, Role.VIEWER, Role.APPROVER})


ANONYMOUS = Principal(name="anonymous", roles=frozenset({Role.ADMIN}), authenticated=False)
