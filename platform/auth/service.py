"""Auth services: users, teams, tokens and portal sessions. Every mutation is audited."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.models import ApiToken, PortalSession, Team, User
from atoll.auth.policy import ROLE_SCOPES, Principal, Role, Scope
from atoll.auth.schemas import NAME_PATTERN, NAME_RULE
from atoll.auth.secrets import (
    hash_password,
    hash_token,
    new_token,
    verify_password,
)
from atoll.db import utcnow
from atoll.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

_NAME = re.compile(NAME_PATTERN)
MIN_PASSWORD_LENGTH = 12


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise InvalidInput(f"{kind} name {name!r} is not allowed: use {NAME_RULE}")


# --- users and teams -------------------------------------------------------------------


def get_user(session: Session, *, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} does not exist")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def create_user(
    session: Session,
    *,
    actor: Principal | None,
    username: str,
    password: str,
    role: Role,
    email: str | None = None,
    teams: list[str] | None = None,
) -> User:
    _check_name("user", username)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, email=email, password_hash=hash_password(password), role=role)
    user.teams = [ensure_team(session, actor=actor, name=name) for name in teams or []]
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.create",
        target_type="user",
        target_id=username,
        summary={"role": role.value, "teams": teams or []},
    )
    return user


def ensure_team(session: Session, *, actor: Principal | None, name: str) -> Team:
    _check_name("team", name)
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
        audit.record(session, actor=actor, action="team.create", target_type="team", target_id=name)
    return team


def authenticate_password(session: Session, *, username: str, password: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        raise Unauthenticated("wrong username or password")
    return user


# --- API tokens ------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def create_token(
    session: Session,
    *,
    actor: Principal,
    name: str,
    scopes: list[Scope],
    expires_in_days: int | None,
    replace: bool = False,
) -> IssuedToken:
    """Issue a token. With `replace`, an active token of the same name is revoked first
    (a second `atoll login` from one machine rotates its token instead of failing)."""
    _check_name("token", name)
    if not scopes:
        raise InvalidInput("scopes: give at least one scope")
    allowed = ROLE_SCOPES[actor.role] & actor.scopes
    beyond = sorted(set(scopes) - allowed)
    if beyond:
        raise Forbidden(
            f"scopes: you cannot grant {', '.join(beyond)}; you hold {', '.join(sorted(allowed))}"
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise InvalidInput("expires_in_days: must be between 1 and 3650")
    taken = select(ApiToken.id).where(ApiToken.user_id == actor.user_id, ApiToken.name == name)
    active = session.scalar(taken.where(ApiToken.revoked_at.is_(None)))
    if active is not None:
        if not replace:
            raise Conflict(f"you already have a token named {name!r}; revoke it or pick another name")
        revoke_token(session, actor=actor, token_id=active)
    for old in session.scalars(
        select(ApiToken).where(ApiToken.user_id == actor.user_id, ApiToken.name == name)
    ):
        old.name = f"{name}~revoked-{old.id}"  # free the name, keep the row for the audit trail
    secret = new_token()
    token = ApiToken(
        user_id=actor.user_id,
        name=name,
        prefix=secret[:10],
        token_hash=hash_token(secret),
        scopes=sorted(set(scopes)),
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token.create",
        target_type="token",
        target_id=token.id,
        summary={"name": name, "scopes": token.scopes, "expires_in_days": expires_in_days},
    )
    return IssuedToken(token=token, secret=secret)


def list_tokens(session: Session, *, actor: Principal, all_users: bool = False) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if not (all_users and actor.can(Scope.admin)):
        query = query.where(ApiToken.user_id == actor.user_id)
    return list(session.scalars(query))


def revoke_token(session: Session, *, actor: Principal, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != actor.user_id and not actor.can(Scope.admin)):
        raise NotFound(f"token {token_id} does not exist or is not yours")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            session,
            actor=actor,
            action="token.revoke",
            target_type="token",
            target_id=token.id,
            summary={"name": token.name, "owner": token.user.username},
        )
    return token


def principal_for_token(session: Session, *, secret: str) -> Principal:
    """Resolve a bearer token, or raise Unauthenticated saying why it is refused."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if token is None:
        raise Unauthenticated("the API token is not valid")
    now = utcnow()
    if token.revoked_at is not None:
        raise Unauthenticated(f"the API token {token.prefix}… was revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated(f"the API token {token.prefix}… expired at {token.expires_at:%Y-%m-%d %H:%M}Z")
    user = token.user
    if not user.is_active:
        raise Unauthenticated(f"user {user.username!r} is deactivated")
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=5):
        token.last_used_at = now  # coarse, so a busy token does not write on every call
    role = Role(user.role)
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role,
        scopes=frozenset(Scope(s) for s in token.scopes) & ROLE_SCOPES[role],
        via="token",
        token_id=token.id,
    )


# --- portal sessions -------------------------------------------------------------------


def start_session(session: Session, *, user: User, hours: int) -> tuple[PortalSession, str]:
    """Create a portal session; returns the row and the cookie value (shown once)."""
    cookie = secrets.token_urlsafe(32)
    row = PortalSession(
        user_id=user.id,
        session_hash=hash_token(cookie),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    principal = principal_for_user(user, via="session")
    audit.record(
        session,
        actor=principal,
        action="session.login",
        target_type="user",
        target_id=user.username,
    )
    return row, cookie


def principal_for_session(session: Session, *, cookie: str) -> Principal | None:
    row = session.scalar(select(PortalSession).where(PortalSession.session_hash == hash_token(cookie)))
    if row is None or row.expires_at <= utcnow() or not row.user.is_active:
        return None
    return principal_for_user(row.user, via="session", session_id=row.id, csrf_token=row.csrf_token)


def end_session(session: Session, *, principal: Principal) -> None:
    if principal.session_id is not None:
        row = session.get(PortalSession, principal.session_id)
        if row is not None:
            session.delete(row)
        audit.record(
            session,
            actor=principal,
            action="session.logout",
            target_type="user",
            target_id=principal.username,
        )


def principal_for_user(
    user: User, *, via: str, session_id: int | None = None, csrf_token: str | None = None
) -> Principal:
    role = Role(user.role)
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role,
        scopes=ROLE_SCOPES[role],
        via=via,
        session_id=session_id,
        csrf_token=csrf_token,
    )


def expire_sessions(session: Session, *, now: datetime | None = None) -> int:
    rows = session.scalars(select(PortalSession).where(PortalSession.expires_at <= (now or utcnow())))
    count = 0
    for row in rows:
        session.delete(row)
        count += 1
    return count
