"""Regressions found by the API contract fuzzer (tests/contract), one class of failure each.

Each test failed before its fix; the fuzzer finds the class again if it comes back.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from atoll.errors import PROBLEM_JSON

from .conftest import Caller


class TestMethods:
    def test_405_lists_every_method_of_the_path(self, client: TestClient, admin: Caller) -> None:
        # GET and PATCH are two routes on one path; Starlette's Allow named only the first.
        response = client.request("TRACE", "/api/v1/models/ranker", headers=admin.headers)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD, OPTIONS, PATCH"
        assert response.headers["content-type"] == PROBLEM_JSON
        assert "allowed: GET, HEAD, OPTIONS, PATCH" in response.json()["detail"]

    def test_head_answers_like_get_without_a_body(self, client: TestClient) -> None:
        response = client.head("/healthz")
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-type"] == "application/json"

    def test_options_answers_allow(self, client: TestClient) -> None:
        response = client.options("/api/v1/tokens")
        assert response.status_code == 204
        assert response.headers["allow"] == "GET, HEAD, OPTIONS, POST"

    def test_unknown_path_is_still_404(self, client: TestClient) -> None:
        assert client.request("TRACE", "/no/such/route").status_code == 404


class TestBodyLimit:
    def test_declared_oversized_body_is_refused_before_reading(
        self, client: TestClient, app: FastAPI
    ) -> None:
        limit = app.state.settings.max_request_bytes
        response = client.post(
            "/api/v1/auth/token",
            content=b"{" + b" " * limit + b"}",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_JSON
        assert f"({limit:,} bytes)" in response.json()["detail"]

    def test_streamed_oversized_body_is_cut_off(self, client: TestClient, app: FastAPI) -> None:
        limit = app.state.settings.max_request_bytes
        chunks = (b" " * 65536 for _ in range(limit // 65536 + 2))
        response = client.post(
            "/api/v1/auth/token", content=chunks, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_JSON


class TestInputs:
    def test_outcomes_with_and_without_optional_fields_in_one_batch(
        self, client: TestClient, admin: Caller
    ) -> None:
        # A multi-row INSERT needs one shape: this batch was a 500 before. (No `experiment` here:
        # naming one that does not exist is a 404 since experiments exist, test_experiments.py.)
        events = [
            {"event_id": "a", "unit_id": "u1", "metric": "click"},
            {"event_id": "b", "unit_id": "u2", "metric": "click", "ts": "2026-11-30T10:00:00Z"},
        ]
        response = client.post("/api/v1/events/outcomes", json={"events": events}, headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.json()["inserted"] == 2

    def test_numbers_are_not_date_times(self, client: TestClient, admin: Caller) -> None:
        audit = client.get("/api/v1/audit", params={"until": "0.5"}, headers=admin.headers)
        assert audit.status_code == 422
        assert "ISO 8601" in audit.json()["detail"]
        event = {"event_id": "a", "unit_id": "u", "metric": "m", "ts": 0}
        outcome = client.post("/api/v1/events/outcomes", json={"events": [event]}, headers=admin.headers)
        assert outcome.status_code == 422

    def test_offsets_beyond_the_database_integer_are_refused(self, client: TestClient, admin: Caller) -> None:
        response = client.get("/api/v1/audit", params={"offset": 2**31}, headers=admin.headers)
        assert response.status_code == 422

    def test_token_names_follow_the_documented_pattern(self, client: TestClient, admin: Caller) -> None:
        body = {"name": "\x1dBad", "scopes": ["read"]}
        response = client.post("/api/v1/tokens", json=body, headers=admin.headers)
        assert response.status_code == 422
        schema = client.get("/openapi.json").json()["components"]["schemas"]["TokenCreate"]
        assert schema["properties"]["name"]["pattern"] == "^[a-z0-9][a-z0-9._-]{0,63}$"


class TestDocument:
    def test_every_error_response_is_a_documented_problem(self, client: TestClient) -> None:
        document = client.get("/openapi.json").json()
        assert "Problem" in document["components"]["schemas"]
        assert "HTTPValidationError" not in document["components"]["schemas"]
        for path, item in document["paths"].items():
            for method, operation in item.items():
                for status, response in operation["responses"].items():
                    if int(status) >= 400:
                        content = response["content"]
                        assert list(content) == [PROBLEM_JSON], (method, path, status)
                        assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}

    def test_authenticated_operations_declare_401_403_and_bearer(self, client: TestClient) -> None:
        document = client.get("/openapi.json").json()
        operation = document["paths"]["/api/v1/tokens"]["post"]
        assert {"401", "403", "409", "413", "422"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
        assert "security" not in document["paths"]["/healthz"]["get"]

    def test_metrics_are_documented_as_text(self, client: TestClient) -> None:
        document = client.get("/openapi.json").json()
        assert list(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


class TestFoundLater:
    def test_a_method_no_route_of_the_path_serves_is_405(self, client: TestClient, admin: Caller) -> None:
        # /versions/upload also matched /versions/{version}, so PATCH was a 422 on "upload".
        response = client.patch("/api/v1/models/ranker/versions/upload", headers=admin.headers)
        assert response.status_code == 405
        assert response.headers["allow"] == "OPTIONS, POST"

    def test_booleans_are_not_outcome_values(self, client: TestClient, admin: Caller) -> None:
        event = {"event_id": "a", "unit_id": "u", "metric": "m", "value": False}
        response = client.post("/api/v1/events/outcomes", json={"events": [event]}, headers=admin.headers)
        assert response.status_code == 422

    def test_webhook_receiver_switched_off_is_a_documented_404(self, client: TestClient) -> None:
        response = client.post("/api/v1/webhooks/mlflow", content=b"{}")
        assert response.status_code == 404
        assert "ATOLL_MLFLOW_WEBHOOK_SECRET" in response.json()["detail"]

    def test_mlflow_dependent_operations_declare_503_with_retry_after(self, client: TestClient) -> None:
        document = client.get("/openapi.json").json()
        register = document["paths"]["/api/v1/models/{name}/versions"]["post"]["responses"]
        assert "Retry-After" in register["503"]["headers"]
        listing = document["paths"]["/api/v1/models/{name}/versions"]["get"]["responses"]
        assert "503" not in listing  # the cache answers lists; MLflow is not asked


class TestFoundInTraffic:
    """What the fuzzer found in the traffic, monitoring and experiment routes."""

    def test_aborting_a_canary_an_endpoint_never_had_is_a_conflict(
        self, client: TestClient, admin: Caller
    ) -> None:
        created = client.post("/api/v1/endpoints", json={"name": "quiet"}, headers=admin.headers)
        assert created.status_code == 201, created.text
        aborted = client.post("/api/v1/endpoints/quiet/canary/abort", json={}, headers=admin.headers)
        assert aborted.status_code == 409 and "no running canary" in aborted.json()["detail"]

    def test_the_plan_route_is_not_shadowed_by_an_experiment_key(self, client: TestClient) -> None:
        paths = client.get("/openapi.json").json()["paths"]
        assert "/api/v1/experiment-plans" in paths and "/api/v1/experiments/plan" not in paths

    def test_a_monitor_flag_is_a_boolean_and_dimensions_are_unique(self, client: TestClient) -> None:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        update = schemas["MonitorUpdate"]["properties"]
        assert update["split_by"]["uniqueItems"] is True
        assert schemas["MonitorCreate"]["properties"]["split_by"]["uniqueItems"] is True

    def test_deploying_a_missing_alias_is_a_documented_404(self, client: TestClient) -> None:
        paths = client.get("/openapi.json").json()["paths"]
        assert "404" in paths["/api/v1/deployments"]["post"]["responses"]
        assert "404" in paths["/api/v1/deployment-previews"]["post"]["responses"]
