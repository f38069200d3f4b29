"""Typed request dependencies: the unit of work, the caller, what the caller may do, and
the platform's parts a route works with (settings, backend catalog, MLflow registry).

Route signatures read as requirements: `principal: Annotated[Principal, Authorize(Scope.deploy)]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from atoll import backends
from atoll.auth import service as auth_service
from atoll.auth.policy import Principal, Scope
from atoll.auth.secrets import constant_time_equal
from atoll.backends import Catalog
from atoll.db import unit_of_work
from atoll.deployer.lifecycle import DeployerContext
from atoll.errors import Forbidden, Unauthenticated, Unavailable
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.settings import Settings
from atoll.web.openapi import raises

SESSION_COOKIE = "atoll_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """One request, one transaction: committed when the route returns, else rolled back."""
    with unit_of_work(request.app.state.session_factory) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def get_deployer(request: Request) -> DeployerContext:
    deployer: DeployerContext = request.app.state.deployer
    return deployer


SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
DeployerDep = Annotated[DeployerContext, Depends(get_deployer)]

MLFLOW_NOT_CONFIGURED = (
    "MLflow is not configured: set ATOLL_MLFLOW_TRACKING_URI, or run `atoll up` (it embeds one)"
)


def optional_registry(request: Request) -> MlflowRegistry | None:
    """The app's MLflow registry, None when no tracking server is configured."""
    registry: MlflowRegistry | None = request.app.state.mlflow
    return registry


def require_registry(registry: MlflowRegistry | None) -> MlflowRegistry:
    """The registry, or 503 naming the setting that configures it."""
    if registry is None:
        raise Unavailable(MLFLOW_NOT_CONFIGURED)
    return registry


@raises(503)
def get_registry(registry: Annotated[MlflowRegistry | None, Depends(optional_registry)]) -> MlflowRegistry:
    return require_registry(registry)


OptionalRegistryDep = Annotated[MlflowRegistry | None, Depends(optional_registry)]
RegistryDep = Annotated[MlflowRegistry, Depends(get_registry)]


def optional_principal(request: Request, session: SessionDep) -> Principal | None:
    """The caller from a bearer token (API, CLI, CI) or a portal session cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return auth_service.principal_for_token(session, secret=secret.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return auth_service.principal_for_session(session, cookie=cookie)
    return None


def current_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise Unauthenticated(
            "sign in, or send 'Authorization: Bearer <token>' (create one with `atoll tokens create`)"
        )
    return principal


async def check_csrf(request: Request, principal: Principal) -> None:
    """Portal sessions must echo their CSRF token on every unsafe request.

    htmx sends it as a header (set once on <body>); plain forms send a hidden field.
    Bearer-token callers are not exposed to CSRF and skip this.
    """
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and "form" in request.headers.get("content-type", ""):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not principal.csrf_token or not constant_time_equal(sent, principal.csrf_token):
        raise Forbidden("the CSRF token is missing or wrong; reload the page and try again")


class Authorize:
    """Requires a scope (which implies the role that grants it) and, for sessions, CSRF."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> Principal:
        reason = principal.missing(self.scope)
        if reason is not None:
            raise Forbidden(reason, required_scope=self.scope.value)
        await check_csrf(request, principal)
        return principal


Reader = Annotated[Principal, Depends(Authorize(Scope.read))]
Registrar = Annotated[Principal, Depends(Authorize(Scope.register))]
Deployer = Annotated[Principal, Depends(Authorize(Scope.deploy))]
Promoter = Annotated[Principal, Depends(Authorize(Scope.promote))]
Admin = Annotated[Principal, Depends(Authorize(Scope.admin))]


# Path parameters carry their rules in the OpenAPI document, so clients and fuzzers see them.
MAX_DB_INT = 2**31 - 1  # INTEGER on PostgreSQL; ids and version numbers stay below it
DbId = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="A numeric id")]
BackendName = Annotated[str, Path(pattern=backends.NAME_PATTERN, description="A backend, e.g. `gpu`")]


class Page:
    """Limit/offset pagination parameters shared by every list endpoint."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500, description="Items per page")] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="Items to skip")] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


PageDep = Annotated[Page, Depends()]
