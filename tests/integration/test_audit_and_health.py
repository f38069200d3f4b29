"""The audit trail of mutations, probes, metrics, and errors that never leak internals."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from atoll.settings import Settings
from atoll.web.app import create_app

from .conftest import Caller


class TestAudit:
    def test_mutations_are_audited_with_actor_and_request_id(self, client: TestClient, admin: Caller) -> None:
        created = client.post(
            "/api/v1/tokens",
            headers={**admin.headers, "X-Request-ID": "req-123"},
            json={"name": "ci", "scopes": ["register"]},
        )
        client.delete(f"/api/v1/tokens/{created.json()['id']}", headers=admin.headers)
        page = client.get("/api/v1/audit", headers=admin.headers, params={"action": "token."}).json()
        actions = [(e["action"], e["actor"]) for e in page["items"]]
        assert actions[:2] == [("token.revoke", "root"), ("token.create", "root")]
        create_row = page["items"][1]
        assert create_row["request_id"] == "req-123"
        assert create_row["summary"]["scopes"] == ["register"]
        assert created.json()["token"] not in str(page)

    def test_failed_mutation_leaves_no_audit_row(self, client: TestClient, admin: Caller) -> None:
        before = client.get("/api/v1/audit", headers=admin.headers).json()["total"]
        response = client.post(
            "/api/v1/tokens", headers=admin.headers, json={"name": "test", "scopes": ["read"]}
        )
        assert response.status_code == 409
        assert client.get("/api/v1/audit", headers=admin.headers).json()["total"] == before

    def test_filters_and_pagination(self, client: TestClient, admin: Caller) -> None:
        for i in range(5):
            client.post("/api/v1/tokens", headers=admin.headers, json={"name": f"t{i}", "scopes": ["read"]})
        page = client.get(
            "/api/v1/audit",
            headers=admin.headers,
            params={"action": "token.create", "limit": 2, "offset": 2},
        ).json()
        assert page["total"] == 6 and page["limit"] == 2 and len(page["items"]) == 2
        assert all(e["action"] == "token.create" for e in page["items"])
        assert (
            client.get("/api/v1/audit", headers=admin.headers, params={"actor": "nobody"}).json()["total"]
            == 0
        )
        bad = client.get("/api/v1/audit", headers=admin.headers, params={"limit": 0})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "limit"


class TestProbes:
    def test_ready_when_the_database_answers(self, client: TestClient) -> None:
        assert client.get("/readyz").json() == {"status": "ready"}

    def test_not_ready_when_the_database_is_unreachable(self, settings: Settings) -> None:
        app = create_app(settings, engine=create_engine("postgresql+psycopg://atoll@127.0.0.1:9/none"))
        with TestClient(app) as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"].startswith("database unreachable: OperationalError")
        assert "Traceback" not in response.text

    def test_not_ready_when_mlflow_is_unreachable(self, settings: Settings, app: FastAPI) -> None:
        app.state.settings = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
        with TestClient(app) as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        assert "MLflow at http://127.0.0.1:9 unreachable" in response.json()["detail"]

    def test_metrics_count_requests_by_route_template(self, client: TestClient, admin: Caller) -> None:
        client.get("/api/v1/backends", headers=admin.headers)
        client.delete("/api/v1/tokens/999", headers=admin.headers)
        text = client.get("/metrics").text
        assert 'atoll_http_requests_total{method="GET",route="/api/v1/backends",status="200"} 1.0' in text
        assert 'route="/api/v1/tokens/{token_id}",status="404"' in text

    def test_backends_api_lists_the_catalog(self, client: TestClient, admin: Caller) -> None:
        backends = client.get("/api/v1/backends", headers=admin.headers).json()
        assert [b["name"] for b in backends] == ["gpu", "asic", "cpu"]
        missing = client.get("/api/v1/backends/tpu", headers=admin.headers)
        assert missing.status_code == 404 and "gpu, asic, cpu" in missing.json()["detail"]


def test_an_internal_error_shows_only_a_request_id(app: FastAPI) -> None:
    """A bug we cannot provoke through real input: a route added for this test raises."""

    def broken() -> None:
        raise RuntimeError("secret internals at /srv/db password=hunter2")

    app.add_api_route("/api/v1/test-broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/test-broken", headers={"X-Request-ID": "abc"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert "abc" in response.json()["detail"]
