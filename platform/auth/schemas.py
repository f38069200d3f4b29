from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from atoll.auth.models import ApiToken, User
from atoll.auth.policy import Role, Scope
from atoll.db import utcnow

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
NAME_RULE = "1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=NAME_PATTERN, description=NAME_RULE, examples=["ada"])
    password: str = Field(min_length=12, max_length=1024)
    role: Role = Role.viewer
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=255)
    teams: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str | None
    role: Role
    is_active: bool
    teams: list[str]
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserRead:
        return cls(
            id=user.id,
            username=user.username,
            email=user.email,
            role=Role(user.role),
            is_active=user.is_active,
            teams=sorted(t.name for t in user.teams),
            created_at=user.created_at,
        )


class Whoami(BaseModel):
    username: str
    role: Role
    scopes: list[Scope]
    via: str
    teams: list[str]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description=NAME_RULE, examples=["ci-github"])
    scopes: list[Scope] = Field(min_length=1, examples=[["register"]])
    expires_in_days: int | None = Field(default=90, ge=1, le=3650)


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    owner: str
    scopes: list[Scope]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    state: str

    @staticmethod
    def fields_of(token: ApiToken) -> dict[str, object]:
        if token.revoked_at is not None:
            state = "revoked"
        elif token.expires_at is not None and token.expires_at <= utcnow():
            state = "expired"
        else:
            state = "active"
        return {
            "id": token.id,
            "name": token.name,
            "prefix": token.prefix,
            "owner": token.user.username,
            "scopes": token.scopes,
            "expires_at": token.expires_at,
            "revoked_at": token.revoked_at,
            "last_used_at": token.last_used_at,
            "created_at": token.created_at,
            "state": state,
        }

    @classmethod
    def of(cls, token: ApiToken) -> TokenRead:
        return cls.model_validate(cls.fields_of(token))


class TokenCreated(TokenRead):
    token: str = Field(description="The secret. Shown once: store it now.")


class PasswordLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    password: str
    token_name: str = Field(default="cli", pattern=NAME_PATTERN, description=NAME_RULE)
    expires_in_days: int | None = Field(default=30, ge=1, le=3650)
