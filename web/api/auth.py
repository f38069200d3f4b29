"""Identity API: who am I, users, API tokens, and password login for the CLI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from atoll.auth import service
from atoll.auth.policy import Principal, Role
from atoll.auth.schemas import (
    PasswordLogin,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
    Whoami,
)
from atoll.auth.service import principal_for_user
from atoll.web.deps import Admin, DbId, Reader, SessionDep, current_principal
from atoll.web.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.get("/whoami")
def whoami(principal: Annotated[Principal, Depends(current_principal)], session: SessionDep) -> Whoami:
    user = service.get_user(session, username=principal.username)
    return Whoami(
        username=principal.username,
        role=principal.role,
        scopes=sorted(principal.scopes),
        via=principal.via,
        teams=sorted(t.name for t in user.teams),
    )


@router.post("/auth/token", status_code=status.HTTP_201_CREATED, tags=["public"], responses=errors(401))
def login_for_token(body: PasswordLogin, session: SessionDep) -> TokenCreated:
    """Exchange a username and password for an API token (used by `atoll login`)."""
    user = service.authenticate_password(session, username=body.username, password=body.password)
    actor = principal_for_user(user, via="password")
    issued = service.create_token(
        session,
        actor=actor,
        name=body.token_name,
        scopes=sorted(actor.scopes),
        expires_in_days=body.expires_in_days,
        replace=True,
    )
    return TokenCreated(**TokenRead.fields_of(issued.token), token=issued.secret)


@router.get("/tokens")
def list_tokens(principal: Reader, session: SessionDep, all_users: bool = False) -> list[TokenRead]:
    return [TokenRead.of(t) for t in service.list_tokens(session, actor=principal, all_users=all_users)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED, responses=errors(409))
def create_token(body: TokenCreate, principal: Reader, session: SessionDep) -> TokenCreated:
    issued = service.create_token(
        session,
        actor=principal,
        name=body.name,
        scopes=body.scopes,
        expires_in_days=body.expires_in_days,
    )
    return TokenCreated(**TokenRead.fields_of(issued.token), token=issued.secret)


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: DbId, principal: Reader, session: SessionDep) -> TokenRead:
    return TokenRead.of(service.revoke_token(session, actor=principal, token_id=token_id))


@router.get("/users")
def list_users(principal: Admin, session: SessionDep) -> list[UserRead]:
    return [UserRead.of(u) for u in service.list_users(session)]


@router.post("/users", status_code=status.HTTP_201_CREATED, responses=errors(409))
def create_user(body: UserCreate, principal: Admin, session: SessionDep) -> UserRead:
    user = service.create_user(
        session,
        actor=principal,
        username=body.username,
        password=body.password,
        role=Role(body.role),
        email=body.email,
        teams=body.teams,
    )
    return UserRead.of(user)
