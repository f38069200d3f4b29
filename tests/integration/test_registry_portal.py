"""The registry's portal pages against a real `mlflow server`, through a portal session."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from .conftest import Caller, sign_in


def _name() -> str:
    return f"portal-{uuid.uuid4().hex[:8]}"


def _register(client: TestClient, caller: Caller, name: str, run_id: str, **body: object) -> None:
    created = client.post(
        f"/api/v1/models/{name}/versions", headers=caller.headers, json={"run_id": run_id, **body}
    )
    assert created.status_code == 201, created.text


@pytest.fixture
def portal(registry_client: TestClient, admin: Caller) -> tuple[TestClient, dict[str, str]]:
    return registry_client, sign_in(registry_client, admin)


def test_an_empty_registry_says_how_to_register(portal: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = portal
    page = client.get("/models")
    assert page.status_code == 200
    assert "No models are registered yet" in page.text
    assert "atoll models register NAME --run-id" in page.text
    assert "MLflow is not configured" not in page.text


def test_the_list_shows_models_and_filters_them(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str]
) -> None:
    client, _ = portal
    ranker, scorer = _name(), _name()
    _register(client, admin, ranker, log_model(), team="search")
    _register(client, admin, scorer, log_model(), team="fraud")
    tagged = client.patch(
        f"/api/v1/models/{ranker}", headers=admin.headers, json={"set": {"task": "ranking"}}
    )
    assert tagged.status_code == 200, tagged.text
    page = client.get("/models")
    assert ranker in page.text and scorer in page.text
    by_team = client.get("/models", params={"team": "search"}, headers={"HX-Request": "true"})
    assert ranker in by_team.text and scorer not in by_team.text
    assert "<html" not in by_team.text, "an htmx filter swaps only the table"
    by_tag = client.get("/models", params={"tag": "task=ranking"})
    assert ranker in by_tag.text and scorer not in by_tag.text
    by_name = client.get("/models", params={"q": scorer[-8:]})
    assert scorer in by_name.text and ranker not in by_name.text
    nothing = client.get("/models", params={"q": "no-such-model-anywhere"})
    assert "No models match these filters" in nothing.text


def test_model_and_version_pages_show_versions_lineage_and_history(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str]
) -> None:
    client, csrf = portal
    name = _name()
    lineage = {
        "git_commit": "0123456789abcdef0123",
        "git_branch": "main",
        "repository": "acme/ranker",
        "ci_build_url": "https://ci.example/builds/42",
        "ci_provider": "github-actions",
        "training_data": "s3://data/ranker/2024-06",
    }
    _register(client, admin, name, log_model(), description="the ranker", lineage=lineage)
    _register(client, admin, name, log_model(seed=1))
    moved = client.post(
        f"/models/{name}/versions/1/promote", data={"alias": "staging", "reason": "try"}, headers=csrf
    )
    assert moved.status_code == 200 and 'data-testid="promoted"' in moved.text, moved.text

    model_page = client.get(f"/models/{name}")
    assert model_page.status_code == 200
    assert f'href="/models/{name}/versions/2"' in model_page.text
    assert "01234567" in model_page.text  # the short commit
    assert 'href="https://ci.example/builds/42"' in model_page.text
    timeline = model_page.text.split('data-testid="timeline"', 1)[1]
    assert "staging" in timeline and "root" in timeline and "try" in timeline and "v1" in timeline

    version_page = client.get(f"/models/{name}/versions/1")
    assert version_page.status_code == 200
    for value in ("the ranker", "0123456789abcdef0123", "acme/ranker", "s3://data/ranker/2024-06", "main"):
        assert value in version_page.text
    builds = version_page.text.split('data-testid="builds"', 1)[1].split("</section>", 1)[0]
    assert "<code>cpu</code>" in builds, "registration queues a build per backend"
    assert "model_name=" not in version_page.text, "the footer shows Atoll's version, not the model's"
    assert "sklearn" in version_page.text, "the flavors from the MLmodel file"
    assert client.get(f"/models/{name}/versions/9").status_code == 404


def test_a_lineage_url_that_is_not_http_is_not_a_link(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str]
) -> None:
    client, _ = portal
    name = _name()
    _register(client, admin, name, log_model(), lineage={"ci_build_url": "javascript:alert(1)"})
    page = client.get(f"/models/{name}/versions/1")
    assert "javascript:alert(1)" in page.text
    assert 'href="javascript:' not in page.text


def test_failing_gates_are_shown_with_reasons_and_move_nothing(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str], mlflow_uri: str
) -> None:
    client, csrf = portal
    name = _name()
    _register(client, admin, name, log_model(metrics={"auc": 0.7}))
    policy = {"protected": True, "gates": {"metrics": [{"name": "auc", "op": ">=", "threshold": 0.9}]}}
    assert client.put(
        f"/api/v1/models/{name}/policies/production", headers=admin.headers, json=policy
    ).is_success
    refused = client.post(f"/models/{name}/versions/1/promote", data={"alias": "production"}, headers=csrf)
    assert refused.status_code == 200
    assert "Not promoted" in refused.text
    assert "metric:auc" in refused.text and "auc = 0.7, required &gt;= 0.9" in refused.text
    assert "FAIL" in refused.text and "pass" in refused.text  # the role gate passed
    assert MlflowClient(mlflow_uri).get_registered_model(name).aliases == {}
    assert "No alias has moved" in client.get(f"/models/{name}").text


def test_passing_gates_move_the_alias_and_rollback_moves_it_back(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str], mlflow_uri: str
) -> None:
    client, csrf = portal
    name = _name()
    _register(client, admin, name, log_model())
    _register(client, admin, name, log_model(seed=2))
    first = client.post(f"/models/{name}/versions/1/promote", data={"alias": "production"}, headers=csrf)
    assert "promoted" in first.text and "@production → v1" in first.text
    second = client.post(
        f"/models/{name}/versions/2/promote", data={"alias": "production", "reason": "better"}, headers=csrf
    )
    assert second.status_code == 200 and "was v1" in second.text
    assert "role" in second.text  # the gate table
    assert MlflowClient(mlflow_uri).get_registered_model(name).aliases == {"production": "2"}

    back = client.post(f"/models/{name}/aliases/production/rollback", headers=csrf)
    assert back.status_code == 200 and "rolled back" in back.text, back.text
    assert 'hx-swap-oob="true"' in back.text  # the timeline refreshes in place
    assert MlflowClient(mlflow_uri).get_registered_model(name).aliases == {"production": "1"}
    assert "rollback" in client.get(f"/models/{name}").text


def test_an_approver_records_an_approval(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str]
) -> None:
    client, csrf = portal
    name = _name()
    _register(client, admin, name, log_model())
    approved = client.post(f"/models/{name}/versions/1/approve", data={"alias": "production"}, headers=csrf)
    assert approved.status_code == 200 and "Approved v1 for @production" in approved.text
    evidence = client.get(f"/api/v1/models/{name}/versions/1/evidence", headers=admin.headers).json()
    assert [(e["kind"], e["status"], e["recorded_by"]) for e in evidence] == [
        ("approval", "approved", "root")
    ]


def test_the_rebuild_button_queues_a_new_build_per_backend(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str]
) -> None:
    client, csrf = portal
    name = _name()
    _register(client, admin, name, log_model())
    queued_at_registration = client.get(
        f"/api/v1/models/{name}/versions/1/builds", headers=admin.headers
    ).json()
    rebuilt = client.post(f"/models/{name}/versions/1/builds", headers=csrf)
    assert rebuilt.status_code == 200 and "Builds per backend" in rebuilt.text
    after = client.get(f"/api/v1/models/{name}/versions/1/builds", headers=admin.headers).json()
    assert len(after) == len(queued_at_registration) + 3
    assert client.post(f"/models/{name}/versions/1/builds").status_code == 403


def test_portal_mutations_without_csrf_are_refused(
    portal: tuple[TestClient, dict[str, str]], admin: Caller, log_model: Callable[..., str], mlflow_uri: str
) -> None:
    client, _ = portal
    name = _name()
    _register(client, admin, name, log_model())
    for path in (
        f"/models/{name}/versions/1/promote",
        f"/models/{name}/versions/1/approve",
        f"/models/{name}/aliases/production/rollback",
    ):
        refused = client.post(path, data={"alias": "staging"})
        assert refused.status_code == 403, path
    assert MlflowClient(mlflow_uri).get_registered_model(name).aliases == {}


def test_without_mlflow_the_pages_say_so(client: TestClient, admin: Caller) -> None:
    sign_in(client, admin)
    page = client.get("/models")
    assert page.status_code == 200 and "MLflow is not configured" in page.text
