"""Portal pages (Jinja2 + htmx). Thin: parse, authorise, call a service, render."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from atoll import audit
from atoll.auth import service as auth_service
from atoll.auth.policy import ROLE_SCOPES, Principal, Role, Scope
from atoll.auth.schemas import TokenRead, UserRead
from atoll.auth.secrets import constant_time_equal
from atoll.errors import AtollError, Forbidden
from atoll.web.deps import (
    SESSION_COOKIE,
    CatalogDep,
    SessionDep,
    SettingsDep,
    check_csrf,
    optional_principal,
)
from atoll.web.portal.render import render

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_COOKIE = "atoll_login_csrf"
AUDIT_PAGE_SIZE = 50


class LoginRequired(Exception):
    pass


def portal_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise LoginRequired
    return principal


async def portal_writer(
    request: Request, principal: Annotated[Principal, Depends(portal_principal)]
) -> Principal:
    await check_csrf(request, principal)
    return principal


Viewer = Annotated[Principal, Depends(portal_principal)]
Writer = Annotated[Principal, Depends(portal_writer)]


def login_redirect(request: Request, _exc: Exception) -> Response:
    target = f"/login?next={request.url.path}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    csrf = secrets.token_urlsafe(24)
    response = render(request, "login.html", principal=None, login_csrf=csrf, next=_safe_next(next))
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", max_age=3600)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not constant_time_equal(csrf_token, expected):
        raise Forbidden("the login form expired; reload the page and sign in again")
    try:
        user = auth_service.authenticate_password(session, username=username, password=password)
    except AtollError as exc:
        return render(
            request,
            "login.html",
            principal=None,
            status=401,
            error=exc.detail,
            login_csrf=expected,
            next=_safe_next(next),
            username=username,
        )
    _row, cookie = auth_service.start_session(session, user=user, hours=settings.session_hours)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        max_age=settings.session_hours * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(principal: Writer, session: SessionDep) -> Response:
    auth_service.end_session(session, principal=principal)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, principal: Viewer, session: SessionDep, catalog: CatalogDep) -> Response:
    recent, _ = audit.search(session, where=audit.AuditFilter(), limit=8, offset=0)
    return render(
        request, "home.html", principal=principal, backends=catalog.backends.values(), recent=recent
    )


@router.get("/backends", response_class=HTMLResponse)
def backends(request: Request, principal: Viewer, catalog: CatalogDep) -> Response:
    return render(request, "backends.html", principal=principal, backends=catalog.backends.values())


@router.get("/audit", response_class=HTMLResponse)
def audit_log(
    request: Request,
    principal: Viewer,
    session: SessionDep,
    actor: str = "",
    action: str = "",
    target_type: str = "",
    offset: int = 0,
) -> Response:
    where = audit.AuditFilter(actor=actor or None, action=action or None, target_type=target_type or None)
    rows, total = audit.search(session, where=where, limit=AUDIT_PAGE_SIZE, offset=max(offset, 0))
    template = "partials/audit_table.html" if request.headers.get("hx-request") else "audit.html"
    return render(
        request,
        template,
        principal=principal,
        rows=rows,
        total=total,
        offset=max(offset, 0),
        page_size=AUDIT_PAGE_SIZE,
        filters={"actor": actor, "action": action, "target_type": target_type},
    )


def _tokens_context(principal: Principal, session: SessionDep) -> dict[str, Any]:
    tokens = [TokenRead.of(t) for t in auth_service.list_tokens(session, actor=principal)]
    grantable = sorted(ROLE_SCOPES[principal.role] & principal.scopes)
    return {"tokens": tokens, "grantable": grantable}


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, principal: Viewer, session: SessionDep) -> Response:
    return render(request, "tokens.html", principal=principal, **_tokens_context(principal, session))


@router.post("/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    principal: Writer,
    session: SessionDep,
    name: Annotated[str, Form()],
    scopes: Annotated[list[Scope], Form()],
    expires_in_days: Annotated[int | None, Form()] = 90,
) -> Response:
    issued = auth_service.create_token(
        session, actor=principal, name=name.strip(), scopes=scopes, expires_in_days=expires_in_days
    )
    return render(
        request,
        "partials/token_created.html",
        principal=principal,
        issued=TokenRead.of(issued.token),
        secret=issued.secret,
        **_tokens_context(principal, session),
    )


@router.post("/tokens/{token_id}/revoke", response_class=HTMLResponse)
def revoke_token(request: Request, token_id: int, principal: Writer, session: SessionDep) -> Response:
    auth_service.revoke_token(session, actor=principal, token_id=token_id)
    return render(
        request,
        "partials/token_table.html",
        principal=principal,
        **_tokens_context(principal, session),
    )


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, principal: Viewer, session: SessionDep) -> Response:
    if not principal.can(Scope.admin):
        raise Forbidden("the users page needs the admin role")
    users = [UserRead.of(u) for u in auth_service.list_users(session)]
    return render(request, "users.html", principal=principal, users=users, roles=list(Role))


@router.post("/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    principal: Writer,
    session: SessionDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    role: Annotated[Role, Form()],
) -> Response:
    if not principal.can(Scope.admin):
        raise Forbidden("creating users needs the admin role")
    auth_service.create_user(
        session, actor=principal, username=username.strip(), password=password, role=role
    )
    users = [UserRead.of(u) for u in auth_service.list_users(session)]
    return render(request, "partials/user_table.html", principal=principal, users=users)
