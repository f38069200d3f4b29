"""Every route that is not on the public list refuses a caller without credentials."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount

from atoll.web.app import PUBLIC_PATHS

from .conftest import Caller, sign_in


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _walk(routes: list[BaseRoute], prefix: str = "") -> list[tuple[str, str]]:
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x wraps routers
        if included is not None:
            found += _walk(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, APIRoute):
            found += [(method, prefix + route.path) for method in sorted(route.methods or ())]
        elif isinstance(route, Mount):
            assert route.path in PUBLIC_PATHS, f"mount {route.path} is not listed as public"
        elif getattr(route, "path", None) not in PUBLIC_PATHS:
            raise AssertionError(f"unexpected route {route!r}: decide whether it is public")
    return found


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    return _walk(app.routes)


def test_every_non_public_route_rejects_a_missing_token(app: FastAPI, client: TestClient) -> None:
    routes = [(m, p) for m, p in _routes(app) if p not in PUBLIC_PATHS]
    assert len(routes) >= 20, "the enumeration found suspiciously few routes"
    for method, path in routes:
        response = client.request(method, _concrete(path), follow_redirects=False)
        if path.startswith("/api/"):
            assert response.status_code == 401, f"{method} {path} answered {response.status_code}"
            assert response.headers["content-type"] == "application/problem+json"
        else:  # portal pages send a browser to the login form instead
            assert response.status_code in {303, 401, 403}, f"{method} {path} answered {response.status_code}"
            if response.status_code == 303:
                assert response.headers["location"].startswith("/login")


def test_every_non_public_route_rejects_a_bad_token(app: FastAPI, client: TestClient) -> None:
    bad = {"Authorization": "Bearer atl_forged"}
    for method, path in _routes(app):
        if path in PUBLIC_PATHS:
            continue
        response = client.request(method, _concrete(path), headers=bad, follow_redirects=False)
        assert response.status_code in {401, 403}, f"{method} {path} answered {response.status_code}"


def test_public_routes_answer_without_credentials(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/login", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_portal_mutations_need_csrf_with_a_session(client: TestClient, admin: Caller) -> None:
    csrf = sign_in(client, admin, page="/tokens")
    refused = client.post("/tokens", data={"name": "x", "scopes": "read"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    wrong = client.post("/tokens", data={"name": "x", "scopes": "read"}, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    accepted = client.post(
        "/tokens",
        data={"name": "x", "scopes": "read"},
        headers=csrf,
    )
    assert accepted.status_code == 200
    assert "atl_" in accepted.text
    api_with_cookie_only = client.post("/api/v1/tokens", json={"name": "y", "scopes": ["read"]})
    assert api_with_cookie_only.status_code == 403, "a cookie-authenticated API mutation needs CSRF too"


def test_login_form_needs_its_csrf_cookie(client: TestClient, admin: Caller) -> None:
    refused = client.post(
        "/login",
        data={"username": admin.username, "password": admin.password, "csrf_token": "forged"},
    )
    assert refused.status_code == 403
