"""Tokens, roles and scopes through the HTTP API, as a client sees them."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from atoll.auth.models import ApiToken
from atoll.auth.policy import Role, Scope
from atoll.db import unit_of_work, utcnow

from .conftest import Caller, MakeCaller


def _is_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["detail"]
    assert "Traceback" not in response.text  # type: ignore[attr-defined]
    return body


class TestAuthentication:
    def test_whoami_with_token(self, client: TestClient, admin: Caller) -> None:
        response = client.get("/api/v1/whoami", headers=admin.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["username"] == "root"
        assert body["role"] == "admin"
        assert set(body["scopes"]) == {s.value for s in Scope}

    def test_missing_token(self, client: TestClient) -> None:
        body = _is_problem(client.get("/api/v1/whoami"), 401)
        assert "Bearer" in str(body["detail"])

    def test_invalid_token(self, client: TestClient) -> None:
        body = _is_problem(client.get("/api/v1/whoami", headers={"Authorization": "Bearer atl_nope"}), 401)
        assert body["detail"] == "the API token is not valid"

    def test_malformed_header(self, client: TestClient) -> None:
        _is_problem(client.get("/api/v1/whoami", headers={"Authorization": "Basic abc"}), 401)

    def test_expired_token(
        self, client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        with unit_of_work(session_factory) as session:
            session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(minutes=1)))
        body = _is_problem(client.get("/api/v1/whoami", headers=admin.headers), 401)
        assert "expired" in str(body["detail"])

    def test_revoked_token(self, client: TestClient, admin: Caller) -> None:
        token_id = client.get("/api/v1/tokens", headers=admin.headers).json()[0]["id"]
        assert client.delete(f"/api/v1/tokens/{token_id}", headers=admin.headers).status_code == 200
        body = _is_problem(client.get("/api/v1/whoami", headers=admin.headers), 401)
        assert "revoked" in str(body["detail"])


class TestAuthorization:
    def test_viewer_cannot_create_users(self, client: TestClient, make_caller: MakeCaller) -> None:
        viewer = make_caller("vic", Role.viewer)
        body = _is_problem(
            client.post(
                "/api/v1/users",
                headers=viewer.headers,
                json={"username": "eve", "password": "x" * 12, "role": "admin"},
            ),
            403,
        )
        assert "admin" in str(body["detail"]) and "viewer" in str(body["detail"])
        assert body["required_scope"] == "admin"

    def test_register_only_token_cannot_read(self, client: TestClient, make_caller: MakeCaller) -> None:
        ci = make_caller("ci-bot", Role.engineer, scopes=[Scope.register])
        body = _is_problem(client.get("/api/v1/audit", headers=ci.headers), 403)
        assert "`read`" in str(body["detail"]) and "register" in str(body["detail"])

    def test_role_lowered_after_issue_limits_old_tokens(
        self, client: TestClient, make_caller: MakeCaller, session_factory: sessionmaker[Session]
    ) -> None:
        from atoll.auth.models import User

        boss = make_caller("boss", Role.admin)
        with unit_of_work(session_factory) as session:
            session.execute(update(User).where(User.username == "boss").values(role=Role.viewer.value))
        _is_problem(client.get("/api/v1/users", headers=boss.headers), 403)

    def test_cannot_grant_scopes_beyond_role(self, client: TestClient, make_caller: MakeCaller) -> None:
        engineer = make_caller("eng", Role.engineer)
        body = _is_problem(
            client.post(
                "/api/v1/tokens",
                headers=engineer.headers,
                json={"name": "x", "scopes": ["promote"]},
            ),
            403,
        )
        assert "promote" in str(body["detail"])


class TestTokens:
    def test_secret_shown_once_and_stored_hashed(
        self, client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        created = client.post(
            "/api/v1/tokens", headers=admin.headers, json={"name": "ci", "scopes": ["register"]}
        )
        assert created.status_code == 201
        secret = created.json()["token"]
        assert secret.startswith("atl_") and len(secret) > 40
        listed = client.get("/api/v1/tokens", headers=admin.headers)
        assert secret not in listed.text
        assert {t["name"] for t in listed.json()} == {"test", "ci"}
        with unit_of_work(session_factory) as session:
            stored = session.scalars(select(ApiToken.token_hash)).all()
        assert secret not in stored and all(len(h) == 64 for h in stored)
        who = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}).json()
        assert who["scopes"] == ["register"]

    def test_duplicate_active_name_conflicts(self, client: TestClient, admin: Caller) -> None:
        _is_problem(
            client.post("/api/v1/tokens", headers=admin.headers, json={"name": "test", "scopes": ["read"]}),
            409,
        )

    def test_name_reusable_after_revoke(self, client: TestClient, admin: Caller) -> None:
        first = client.post("/api/v1/tokens", headers=admin.headers, json={"name": "cd", "scopes": ["read"]})
        client.delete(f"/api/v1/tokens/{first.json()['id']}", headers=admin.headers)
        again = client.post("/api/v1/tokens", headers=admin.headers, json={"name": "cd", "scopes": ["read"]})
        assert again.status_code == 201

    def test_cannot_revoke_someone_elses(
        self, client: TestClient, admin: Caller, make_caller: MakeCaller
    ) -> None:
        other = make_caller("other", Role.engineer)
        admin_token = client.get("/api/v1/tokens", headers=admin.headers).json()[0]["id"]
        _is_problem(client.delete(f"/api/v1/tokens/{admin_token}", headers=other.headers), 404)

    def test_password_login_issues_role_scoped_token(
        self, client: TestClient, make_caller: MakeCaller
    ) -> None:
        eng = make_caller("eng", Role.engineer)
        issued = client.post("/api/v1/auth/token", json={"username": "eng", "password": eng.password})
        assert issued.status_code == 201
        assert set(issued.json()["scopes"]) == {"read", "register", "deploy", "ingest"}
        _is_problem(
            client.post("/api/v1/auth/token", json={"username": "eng", "password": "wrong-password"}),
            401,
        )


class TestValidation:
    def test_malformed_body_names_field_paths(self, client: TestClient, admin: Caller) -> None:
        body = _is_problem(
            client.post("/api/v1/tokens", headers=admin.headers, json={"name": "x", "scopes": ["fly"]}),
            422,
        )
        fields = [e["field"] for e in body["errors"]]  # type: ignore[attr-defined]
        assert fields == ["scopes.0"]
        assert str(body["detail"]).startswith("scopes.0:")

    def test_not_json(self, client: TestClient, admin: Caller) -> None:
        _is_problem(
            client.post(
                "/api/v1/tokens",
                headers={**admin.headers, "content-type": "application/json"},
                content="{",
            ),
            422,
        )

    def test_bad_user_name_is_422(self, client: TestClient, admin: Caller) -> None:
        body = _is_problem(
            client.post(
                "/api/v1/users",
                headers=admin.headers,
                json={"username": "Bad Name", "password": "x" * 12},
            ),
            422,
        )
        assert "Bad Name" in str(body["detail"])
