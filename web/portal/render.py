"""Template rendering for the portal: one Jinja2 environment, one base context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from atoll._version import __version__
from atoll.auth.policy import Principal, Scope

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES_DIR)

NAV = (
    ("Models", "/models", "registry"),
    ("Deployments", "/deployments", "deployer"),
    ("Experiments", "/experiments", "abtest"),
    ("A/B calculator", "/ab-calculator", "abtest"),
    ("Monitoring", "/monitoring", "monitoring"),
    ("Backends", "/backends", "backends"),
    ("Audit", "/audit", "audit"),
    ("Tokens", "/tokens", "tokens"),
)


def render(
    request: Request,
    template: str,
    *,
    principal: Principal | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    base = {
        "principal": principal,
        "csrf_token": principal.csrf_token if principal else None,
        "nav": NAV,
        "is_admin": bool(principal and principal.can(Scope.admin)),
        "version": __version__,
        "path": request.url.path,
    }
    return templates.TemplateResponse(request, template, {**base, **context}, status_code=status)


def error_page(request: Request, *, status: int, title: str, detail: str) -> HTMLResponse:
    return render(request, "error.html", principal=None, status=status, title=title, detail=detail)
