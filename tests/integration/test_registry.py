"""The registry against a real `mlflow server`: registration, sync, webhooks, bad input."""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.audit import AuditEvent
from atoll.auth.policy import Role, Scope
from atoll.db import unit_of_work
from atoll.registry import webhooks
from atoll.registry.models import CachedModel

from .conftest import WEBHOOK_SECRET, Caller, MakeCaller


def _name() -> str:
    return f"ranker-{uuid.uuid4().hex[:8]}"


def _audit_count(factory: sessionmaker[Session]) -> int:
    with unit_of_work(factory) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


class TestRegistration:
    def test_from_a_run_with_ci_lineage(
        self, registry_client: TestClient, admin: Caller, log_model: Callable[..., str]
    ) -> None:
        run_id = log_model()
        name = _name()
        body = {
            "run_id": run_id,
            "team": "search",
            "description": "first try",
            "tags": {"task": "ranking"},
            "lineage": {"git_commit": "abc123", "ci_build_url": "https://ci.example/1"},
        }
        created = registry_client.post(f"/api/v1/models/{name}/versions", headers=admin.headers, json=body)
        assert created.status_code == 201, created.text
        version = created.json()
        assert version["version"] == 1 and version["run_id"] == run_id
        assert version["lineage"] == {"git_commit": "abc123", "ci_build_url": "https://ci.example/1"}
        assert version["tags"]["atoll.registered_by"] == "root"
        mlflow_version = MlflowClient(registry_client.app.state.mlflow.uri).get_model_version(name, "1")  # type: ignore[attr-defined]
        assert mlflow_version.tags["atoll.lineage.git_commit"] == "abc123"
        listed = registry_client.get(
            "/api/v1/models", headers=admin.headers, params={"team": "search", "q": name}
        )
        assert [m["name"] for m in listed.json()["items"]] == [name]
        audit = registry_client.get(
            "/api/v1/audit", headers=admin.headers, params={"action": "model_version."}
        )
        assert audit.json()["items"][0]["target_id"] == f"{name}/1"

    def test_a_register_scoped_ci_token_registers_but_cannot_promote(
        self, registry_client: TestClient, make_caller: MakeCaller, log_model: Callable[..., str]
    ) -> None:
        ci = make_caller("ci", Role.engineer, scopes=[Scope.register])
        name = _name()
        created = registry_client.post(
            f"/api/v1/models/{name}/versions", headers=ci.headers, json={"run_id": log_model()}
        )
        assert created.status_code == 201, created.text
        promoted = registry_client.post(
            f"/api/v1/models/{name}/aliases/staging/promote", headers=ci.headers, json={"version": 1}
        )
        assert promoted.status_code == 403
        assert "deploy" in promoted.json()["detail"]

    def test_unknown_run_is_404_naming_it(self, registry_client: TestClient, admin: Caller) -> None:
        missing = "0" * 32
        response = registry_client.post(
            f"/api/v1/models/{_name()}/versions", headers=admin.headers, json={"run_id": missing}
        )
        assert response.status_code == 404
        assert missing in response.json()["detail"]

    @pytest.mark.parametrize("bad", ["has:colon", " padded", "quote'd", "x" * 300])
    def test_names_mlflow_would_reject_are_422_before_any_call(
        self, client: TestClient, admin: Caller, bad: str
    ) -> None:
        # `client` has no MLflow configured at all: 422 (not 503) proves the name was
        # refused before any MLflow call.
        response = client.post(
            f"/api/v1/models/{bad}/versions", headers=admin.headers, json={"model_uri": "runs:/x/model"}
        )
        assert response.status_code == 422, response.text
        assert "model name" in response.json()["detail"]

    def test_unreachable_mlflow_is_503_with_the_uri_and_writes_nothing(
        self, registry_app: object, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        from fastapi import FastAPI

        from atoll.registry.mlflow.adapter import MlflowRegistry

        assert isinstance(registry_app, FastAPI)
        registry_app.state.mlflow = MlflowRegistry("http://127.0.0.1:9")
        before = _audit_count(session_factory)
        with TestClient(registry_app) as test_client:
            response = test_client.post(
                f"/api/v1/models/{_name()}/versions",
                headers=admin.headers,
                json={"model_uri": "s3://b/model"},
            )
        assert response.status_code == 503
        assert "http://127.0.0.1:9" in response.json()["detail"]
        assert _audit_count(session_factory) == before
        with unit_of_work(session_factory) as session:
            assert session.scalar(select(func.count()).select_from(CachedModel)) == 0


def _model_archive(source: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        bundle.add(source, arcname="model")
    return buffer.getvalue()


class TestUpload:
    @pytest.fixture
    def saved_model(self, tmp_path: Path) -> Path:
        import mlflow
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        features = np.arange(40, dtype=float).reshape(20, 2)
        model = LogisticRegression().fit(features, (features[:, 0] > 20).astype(int))
        path = tmp_path / "local-model"
        mlflow.sklearn.save_model(model, str(path), pip_requirements=["scikit-learn"])
        return path

    def test_a_local_model_is_uploaded_and_registered(
        self, registry_client: TestClient, admin: Caller, saved_model: Path
    ) -> None:
        name = _name()
        response = registry_client.post(
            f"/api/v1/models/{name}/versions/upload",
            headers=admin.headers,
            files={"file": ("model.tar.gz", _model_archive(saved_model))},
            data={"metadata": json.dumps({"description": "from a laptop"})},
        )
        assert response.status_code == 201, response.text
        assert response.json()["source"].startswith("runs:/")
        client = MlflowClient(registry_client.app.state.mlflow.uri)  # type: ignore[attr-defined]
        assert client.get_model_version(name, "1").description == "from a laptop"

    def test_an_interrupted_upload_registers_nothing(
        self, registry_client: TestClient, admin: Caller, saved_model: Path
    ) -> None:
        name = _name()
        archive = _model_archive(saved_model)
        response = registry_client.post(
            f"/api/v1/models/{name}/versions/upload",
            headers=admin.headers,
            files={"file": ("model.tar.gz", archive[: len(archive) // 2])},
        )
        assert response.status_code == 422
        assert "damaged or incomplete" in response.json()["detail"]
        client = MlflowClient(registry_client.app.state.mlflow.uri)  # type: ignore[attr-defined]
        assert client.search_registered_models(filter_string=f"name = '{name}'") == []

    def test_a_folder_without_mlmodel_is_refused(
        self, registry_client: TestClient, admin: Caller, tmp_path: Path
    ) -> None:
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "weights.bin").write_bytes(b"\0" * 10)
        response = registry_client.post(
            f"/api/v1/models/{_name()}/versions/upload",
            headers=admin.headers,
            files={"file": ("m.tar.gz", _model_archive(tmp_path / "junk"))},
        )
        assert response.status_code == 422 and "MLmodel" in response.json()["detail"]


class TestSync:
    def test_versions_registered_with_the_plain_mlflow_client_appear_after_a_sync(
        self, registry_client: TestClient, admin: Caller, log_model: Callable[..., str], mlflow_uri: str
    ) -> None:
        import mlflow

        name = _name()
        run_id = log_model()
        mlflow.set_tracking_uri(mlflow_uri)
        mlflow.register_model(f"runs:/{run_id}/model", name)
        assert registry_client.get(f"/api/v1/models/{name}", headers=admin.headers).status_code == 404
        synced = registry_client.post("/api/v1/registry/sync", headers=admin.headers)
        assert synced.status_code == 200 and synced.json()["models"] >= 1
        model = registry_client.get(f"/api/v1/models/{name}", headers=admin.headers).json()
        assert model["latest_version"] == 1

    def test_a_signed_webhook_syncs_that_model_at_once(
        self, registry_client: TestClient, admin: Caller, log_model: Callable[..., str], mlflow_uri: str
    ) -> None:
        name = _name()
        MlflowClient(mlflow_uri).create_registered_model(name)
        body = json.dumps(
            {"entity": "registered_model", "action": "created", "data": {"name": name}}
        ).encode()
        stamp = str(int(time.time()))
        headers = {
            "X-MLflow-Delivery-Id": "d1",
            "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": webhooks.sign(WEBHOOK_SECRET, "d1", stamp, body),
            "content-type": "application/json",
        }
        forged = {**headers, "X-MLflow-Signature": webhooks.sign("wrong", "d1", stamp, body)}
        assert (
            registry_client.post("/api/v1/webhooks/mlflow", content=body, headers=forged).status_code == 401
        )
        assert (
            registry_client.post("/api/v1/webhooks/mlflow", content=body, headers=headers).status_code == 204
        )
        assert registry_client.get(f"/api/v1/models/{name}", headers=admin.headers).status_code == 200

    def test_mlflow_delivers_a_real_webhook_to_the_receiver(
        self, registry_app: object, admin: Caller, live_registry_url: str, mlflow_uri: str
    ) -> None:
        name = _name()
        client = MlflowClient(mlflow_uri)
        hook = client.create_webhook(
            name=f"atoll-{name}",
            url=f"{live_registry_url}/api/v1/webhooks/mlflow",
            events=["registered_model.created"],
            secret=WEBHOOK_SECRET,
        )
        try:
            time.sleep(1.5)  # MLflow caches each event's webhook list (TTL 1 s in the fixture)
            client.create_registered_model(name)
            deadline = time.monotonic() + 20
            found = 0
            while time.monotonic() < deadline and found != 200:
                found = httpx.get(
                    f"{live_registry_url}/api/v1/models/{name}", headers=admin.headers
                ).status_code
                time.sleep(0.2)
            assert found == 200, "MLflow's webhook delivery did not reach Atoll within 20 s"
        finally:
            client.delete_webhook(hook.webhook_id)

    def test_a_version_created_straight_in_mlflow_gets_builds_through_the_webhook(
        self,
        admin: Caller,
        live_registry_url: str,
        mlflow_uri: str,
        log_model: Callable[..., str],
    ) -> None:
        import mlflow

        name = _name()
        client = MlflowClient(mlflow_uri)
        hook = client.create_webhook(
            name=f"atoll-v-{name}",
            url=f"{live_registry_url}/api/v1/webhooks/mlflow",
            events=["model_version.created"],
            secret=WEBHOOK_SECRET,
        )
        try:
            run_id = log_model()
            time.sleep(1.5)  # MLflow caches each event's webhook list (TTL 1 s in the fixture)
            mlflow.set_tracking_uri(mlflow_uri)
            mlflow.register_model(f"runs:/{run_id}/model", name)
            deadline = time.monotonic() + 20
            backends: list[str] = []
            while time.monotonic() < deadline and not backends:
                listed = httpx.get(
                    f"{live_registry_url}/api/v1/models/{name}/versions/1/builds", headers=admin.headers
                )
                backends = sorted(b["backend"] for b in listed.json()) if listed.status_code == 200 else []
                time.sleep(0.2)
            assert backends == ["asic", "cpu", "gpu"]
            # a version registered through Atoll gets its builds once, not again from the webhook
            atoll_built = httpx.post(
                f"{live_registry_url}/api/v1/models/{name}/versions",
                headers=admin.headers,
                json={"run_id": log_model()},
                timeout=60,
            )
            assert atoll_built.status_code == 201, atoll_built.text
            time.sleep(3)  # time for MLflow's delivery of model_version.created
            second = httpx.get(
                f"{live_registry_url}/api/v1/models/{name}/versions/2/builds", headers=admin.headers
            )
            assert len(second.json()) == 3
        finally:
            client.delete_webhook(hook.webhook_id)
