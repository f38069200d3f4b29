"""Who may do what: roles, scopes and the principal a request acts as.

A role bounds the scopes a user can hold; a token carries a subset of its owner's scopes.
A request may do what both its token and its owner's *current* role allow, so lowering a
role takes effect on tokens issued before.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    viewer = "viewer"
    engineer = "engineer"
    approver = "approver"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Scope(StrEnum):
    read = "read"
    register = "register"
    deploy = "deploy"
    promote = "promote"
    ingest = "ingest"  # send outcome/inference events; for services, not people
    admin = "admin"


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.viewer: frozenset({Scope.read}),
    Role.engineer: frozenset({Scope.read, Scope.register, Scope.deploy, Scope.ingest}),
    Role.approver: frozenset({Scope.read, Scope.register, Scope.deploy, Scope.ingest, Scope.promote}),
    Role.admin: frozenset(Scope),
}


def lowest_role_with(scope: Scope) -> Role:
    return next(role for role in Role if scope in ROLE_SCOPES[role])


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: int
    username: str
    role: Role
    scopes: frozenset[Scope]
    via: str  # "token" or "session"
    token_id: int | None = None
    session_id: int | None = None
    csrf_token: str | None = None

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    def missing(self, scope: Scope) -> str | None:
        """Why this principal may not use `scope`, or None when it may."""
        if scope not in ROLE_SCOPES[self.role]:
            need = lowest_role_with(scope)
            return f"this needs the `{scope}` scope, which needs role {need} or above; you are {self.role}"
        if scope not in self.scopes:
            held = ", ".join(sorted(self.scopes)) or "none"
            return f"this needs the `{scope}` scope; your token has: {held}"
        return None
