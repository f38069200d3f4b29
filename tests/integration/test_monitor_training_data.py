"""A monitor's reference from a model version's training data, with a real MLflow server.

A training run logs its data (a Parquet artifact, or a dataset input with context
`training`) and a small scikit-learn model; the version is registered through Atoll's API
with lineage `training_data`. The endpoint's deployments are rows as the deployer writes
them (a build, a deployment, a weighted route): which one is stable is all the default
needs, and starting model servers would test nothing more of it. Drift runs go through the
real job worker, as in test_monitors.py.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from atoll.auth.policy import Role
from atoll.db import unit_of_work
from atoll.deployer.models import Deployment, Endpoint, EndpointRoute
from atoll.monitoring import runs, service
from atoll.monitoring.models import MonitorReference
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.models import Build
from atoll.settings import Settings
from atoll.web.app import create_app
from tests.integration.conftest import MakeCaller, _serve, sign_in
from tests.integration.test_monitors import SPEC, Env, reference_frame, window_rows


def training_frame(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The monitor's columns plus a label, which the reference drops."""
    frame = reference_frame(rows, seed)
    frame["label"] = (frame["x"] > 0).astype(int)
    return frame


@dataclass
class Training:
    env: Env
    mlflow_uri: str
    datasets: Path
    model: str

    def log_run(
        self,
        frame: pd.DataFrame,
        *,
        artifact: bool = True,
        dataset: Path | None = None,
        signature: bool = False,
    ) -> str:
        """A training run: the data as `data/train.parquet` and/or a training dataset input
        whose source is a local file, and the model fitted on it (with `signature`: the
        monitor's columns as its MLflow signature's inputs)."""
        import mlflow
        from mlflow.data.pandas_dataset import from_pandas
        from sklearn.linear_model import LogisticRegression

        mlflow.set_tracking_uri(self.mlflow_uri)
        with mlflow.start_run() as run:
            if artifact:
                path = self.datasets.parent / uuid.uuid4().hex / "train.parquet"
                path.parent.mkdir()
                frame.to_parquet(path, index=False)
                mlflow.log_artifact(str(path), artifact_path="data")
            if dataset is not None:
                frame.to_parquet(dataset, index=False)
                with pytest.warns(UserWarning, match="interpreted in multiple ways"):  # MLflow's own
                    source = from_pandas(frame, source=str(dataset), name="train")
                mlflow.log_input(source, context="training")
                mlflow.log_input(from_pandas(frame.head(10), name="eval"), context="eval")
            fitted = LogisticRegression().fit(frame[["x"]], frame["label"])
            inputs = mlflow.models.infer_signature(frame[["x", "y", "c"]]) if signature else None
            mlflow.sklearn.log_model(
                fitted, name="model", pip_requirements=["scikit-learn"], signature=inputs
            )
        return str(run.info.run_id)

    def register(self, run_id: str, **lineage: str) -> int:
        response = self.env.client.post(
            f"/api/v1/models/{self.model}/versions",
            json={"run_id": run_id, "lineage": lineage},
            headers=self.env.caller.headers,
        )
        assert response.status_code == 201, response.text
        return int(response.json()["version"])

    def serve(self, weights: dict[int, int]) -> None:
        """The endpoint's deployments of these versions with these weights, as the deployer
        records them (replacing any earlier ones' weights)."""
        with unit_of_work(self.env.factory) as session:
            endpoint = session.scalar(select(Endpoint).where(Endpoint.name == "scoring"))
            assert endpoint is not None
            for version, weight in weights.items():
                name = f"scoring-v{version}"
                deployment = session.scalar(select(Deployment).where(Deployment.name == name))
                if deployment is None:
                    build = Build(model_name=self.model, version=version, backend="cpu", status="succeeded")
                    session.add(build)
                    session.flush()
                    deployment = Deployment(
                        name=name,
                        model_name=self.model,
                        version=version,
                        backend="cpu",
                        build_id=build.id,
                        target="local",
                        endpoint_id=endpoint.id,
                        state="available",
                        created_by="mona",
                    )
                    session.add(deployment)
                    session.flush()
                    session.add(
                        EndpointRoute(endpoint_id=endpoint.id, deployment_id=deployment.id, weight=weight)
                    )
                else:
                    session.execute(
                        update(EndpointRoute)
                        .where(EndpointRoute.deployment_id == deployment.id)
                        .values(weight=weight)
                    )

    def create(self, name: str = "scoring-drift", **reference: Any) -> Any:
        body = {
            "name": name,
            "endpoint": "scoring",
            "spec": SPEC,
            "reference": {"source": "training_data", **reference},
        }
        return self.env.client.post("/api/v1/monitors", json=body, headers=self.env.caller.headers)

    def stored(self, name: str = "scoring-drift") -> pd.DataFrame:
        with unit_of_work(self.env.factory) as session:
            monitor = service.get(session, name)
            reference = session.scalar(
                select(MonitorReference).where(MonitorReference.monitor_id == monitor.id)
            )
            assert reference is not None
            return pd.read_parquet(io.BytesIO(reference.parquet))


@pytest.fixture
def training_app(registry_settings: Settings, engine: Engine, tmp_path: Path) -> FastAPI:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    settings = registry_settings.model_copy(update={"training_data_roots": [datasets]})
    return create_app(settings, engine=engine)


@pytest.fixture
def training(
    training_app: FastAPI,
    make_caller: MakeCaller,
    session_factory: sessionmaker[Session],
    mlflow_uri: str,
) -> Iterator[Training]:
    with TestClient(training_app, raise_server_exceptions=False) as client:
        caller = make_caller("mona", Role.engineer)
        created = client.post("/api/v1/endpoints", json={"name": "scoring"}, headers=caller.headers)
        assert created.status_code == 201, created.text
        env = Env(client, caller, session_factory, runs.reports_root(training_app.state.settings.data_dir))
        datasets = training_app.state.settings.training_data_roots[0]
        yield Training(env, mlflow_uri, datasets, model=f"fraud-{uuid.uuid4().hex[:8]}")


def audit_rows(env: Env, action: str) -> list[dict[str, Any]]:
    found = env.client.get(f"/api/v1/audit?action={action}", headers=env.caller.headers).json()
    return list(found["items"])


class TestFromLineage:
    def test_a_named_version_artifact_becomes_the_reference_and_drift_runs_against_it(
        self, training: Training
    ) -> None:
        frame = training_frame()
        run_id = training.log_run(frame)
        version = training.register(run_id, training_data="data/train.parquet")  # a path in its run

        created = training.create(model=training.model, version=version)
        assert created.status_code == 201, created.text
        monitor = created.json()
        assert (monitor["reference_source"], monitor["reference_model"], monitor["reference_version"]) == (
            "training_data",
            training.model,
            version,
        )
        reference = monitor["reference"]
        assert reference["source"] == "training_data"
        assert reference["filename"] == f"runs:/{run_id}/data/train.parquet"
        assert (reference["rows"], reference["columns"]) == (2000, ["x", "y", "c"])
        pd.testing.assert_frame_equal(training.stored(), frame[["x", "y", "c"]])

        env = training.env
        env.write(window_rows(1500, drift=True, seed=1))
        queued = env.run_now()
        env.drain()
        detail = env.run("scoring-drift", queued["run_id"])
        assert (detail["state"], detail["status"], detail["rows"]) == ("succeeded", "drift", 1500)
        drifted = {c["column"] for c in detail["columns"] if c["drifted"]}
        assert drifted == {"x", "c"}

        [row] = audit_rows(env, "monitor.create")
        assert row["summary"]["reference"] == {
            "source": "training_data",
            "model": training.model,
            "version": version,
        }
        sign_in(env.client, env.caller, page="/monitoring")
        page = env.client.get("/monitoring/scoring-drift").text
        shown = page.split('data-testid="monitor-reference">')[1].split("</dd>")[0]
        assert "2000 rows, training data of" in shown and f"{training.model} v{version}</a>" in shown
        assert f"runs:/{run_id}/data/train.parquet" in shown

    def test_without_a_spec_the_columns_come_from_the_served_versions_signature(
        self, training: Training
    ) -> None:
        signed = training.register(
            training.log_run(training_frame(), signature=True), training_data="data/train.parquet"
        )
        unsigned = training.register(training.log_run(training_frame()), training_data="data/train.parquet")
        training.serve({signed: 100, unsigned: 0})
        body = {"name": "from-signature", "endpoint": "scoring", "reference": {"source": "training_data"}}
        created = training.env.client.post("/api/v1/monitors", json=body, headers=training.env.caller.headers)
        assert created.status_code == 201, created.text
        assert [(c["name"], c["kind"], c["method"]) for c in created.json()["spec"]["columns"]] == [
            ("x", "numeric", "auto"),
            ("y", "numeric", "auto"),
            ("c", "categorical", "auto"),
        ]
        assert created.json()["reference"]["columns"] == ["x", "y", "c"]

        training.serve({signed: 0, unsigned: 100})
        refused = training.env.client.post(
            "/api/v1/monitors", json={**body, "name": "no-signature"}, headers=training.env.caller.headers
        )
        assert refused.status_code == 422 and refused.json()["field"] == "spec", refused.text
        assert f"{training.model} v{unsigned} has no MLflow signature" in refused.json()["detail"]
        assert (
            training.env.client.get(
                "/api/v1/monitors/no-signature", headers=training.env.caller.headers
            ).status_code
            == 404
        )

    def test_default_is_the_stable_deployments_version_and_a_reload_follows_a_promotion(
        self, training: Training, make_caller: MakeCaller, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = training.log_run(training_frame(1200, seed=1))
        second = training.log_run(training_frame(900, seed=2))
        v1 = training.register(first, training_data=f"runs:/{first}/data/train.parquet")
        from mlflow import MlflowClient

        run_artifacts = MlflowClient(training.mlflow_uri).get_run(second).info.artifact_uri
        artifact_uri = f"{run_artifacts}/data/train.parquet"
        assert artifact_uri.startswith("mlflow-artifacts:/")
        v2 = training.register(second, training_data=artifact_uri)
        training.serve({v1: 90, v2: 10})  # v2 is the canary: v1 is stable

        created = training.create()
        assert created.status_code == 201, created.text
        assert (created.json()["reference_version"], created.json()["reference"]["rows"]) == (v1, 1200)

        viewer = make_caller("vic", Role.viewer)
        refused = training.env.client.post(
            "/api/v1/monitors/scoring-drift/reference/training-data", headers=viewer.headers
        )
        assert refused.status_code == 403

        training.serve({v1: 0, v2: 100})  # promoted
        reloaded = training.env.client.post(
            "/api/v1/monitors/scoring-drift/reference/training-data", headers=training.env.caller.headers
        )
        assert reloaded.status_code == 201, reloaded.text
        assert (reloaded.json()["rows"], reloaded.json()["filename"]) == (900, artifact_uri)
        pd.testing.assert_frame_equal(training.stored(), training_frame(900, seed=2)[["x", "y", "c"]])
        [row] = audit_rows(training.env, "monitor.reference")
        assert row["actor"] == "mona" and row["target_id"] == "scoring-drift"
        assert (row["summary"]["model"], row["summary"]["version"], row["summary"]["rows"]) == (
            training.model,
            v2,
            900,
        )

        # The CLI, against the platform served over HTTP: back to v1 by name.
        from typer.testing import CliRunner

        from atoll.cli import app as cli

        served = _serve(training.env.client.app)  # type: ignore[arg-type]
        monkeypatch.setenv("ATOLL_URL", next(served))
        monkeypatch.setenv("ATOLL_TOKEN", training.env.caller.token)
        try:
            runner = CliRunner()
            args = ["monitor", "reference", "scoring-drift", "--training-data"]
            loaded = runner.invoke(cli, [*args, "--model", training.model, "--version", str(v1), "--json"])
            assert loaded.exit_code == 0, loaded.output
            shown = json.loads(loaded.stdout)
            assert (shown["reference_version"], shown["reference"]["rows"]) == (v1, 1200)
            human = runner.invoke(cli, args)
            assert human.exit_code == 0, human.output
            assert f"900 rows, training data of {training.model} v{v2}" in human.stdout
            assert runner.invoke(cli, [*args, "--model", training.model]).exit_code == 2
            monitor_file = training.datasets.parent / "monitor.yaml"
            monitor_file.write_text(
                "name: cli-drift\nendpoint: scoring\nreference: {source: training_data}\n"
                "spec:\n  columns:\n    - {name: x, kind: numeric}\n"
            )
            created = runner.invoke(cli, ["monitor", "create", str(monitor_file)])
            assert created.exit_code == 0, created.output
            assert f"reference 900 rows, training data of {training.model} v{v2}" in created.stdout
        finally:
            next(served, None)


class TestFromDatasetInput:
    def test_the_runs_training_dataset_input_is_used_when_lineage_names_none(
        self, training: Training
    ) -> None:
        frame = training_frame(700, seed=3)
        dataset = training.datasets / "fraud-train.parquet"
        run_id = training.log_run(frame, artifact=False, dataset=dataset)
        version = training.register(run_id)

        created = training.create(model=training.model, version=version)
        assert created.status_code == 201, created.text
        assert created.json()["reference"]["filename"] == str(dataset.resolve())
        pd.testing.assert_frame_equal(training.stored(), frame[["x", "y", "c"]])


class TestRefusals:
    def test_no_training_data_is_422_naming_the_lineage_key_and_how_to_set_it(
        self, training: Training
    ) -> None:
        version = training.register(training.log_run(training_frame(50), artifact=False))
        response = training.create(model=training.model, version=version)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        detail = response.json()["detail"]
        assert detail.startswith(f"reference: {training.model} v{version} names no training data")
        assert "lineage has no `training_data`" in detail and "context 'training'" in detail
        assert "--training-data" in detail
        assert (
            training.env.client.get("/api/v1/monitors", headers=training.env.caller.headers).json()["total"]
            == 0
        )

    def test_spec_columns_missing_from_the_artifact_are_listed(self, training: Training) -> None:
        run_id = training.log_run(training_frame(100).drop(columns=["y"]))
        version = training.register(run_id, training_data="data/train.parquet")
        response = training.create(model=training.model, version=version)
        assert response.status_code == 422
        assert "lacks the spec's columns ['y']" in response.json()["detail"]
        folder = training.register(run_id, training_data="data")
        response = training.create(model=training.model, version=folder)
        assert response.status_code == 422
        assert f"runs:/{run_id}/data is a folder; name one CSV or Parquet file" in response.json()["detail"]

    def test_no_stable_deployment_and_an_oversized_artifact(
        self, training: Training, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        response = training.create()
        assert response.status_code == 422 and "has no deployment taking traffic" in response.json()["detail"]
        version = training.register(training.log_run(training_frame(500)), training_data="data/train.parquet")
        monkeypatch.setattr(service, "MAX_REFERENCE_BYTES", 1000)  # the limit, not the artifact, shrinks
        too_big = training.create(model=training.model, version=version)
        assert too_big.status_code == 422
        assert "at most 1,000 are read" in too_big.json()["detail"]

    def test_mlflow_missing_or_unreachable_is_503(self, training: Training, training_app: FastAPI) -> None:
        training.env.create()  # an upload-reference monitor: the reload must not half-change it
        training_app.state.mlflow = MlflowRegistry("http://127.0.0.1:9")
        body = {"model": training.model, "version": 1}
        url = "/api/v1/monitors/scoring-drift/reference/training-data"
        unreachable = training.env.client.post(url, json=body, headers=training.env.caller.headers)
        assert unreachable.status_code == 503, unreachable.text
        assert "http://127.0.0.1:9" in unreachable.json()["detail"]
        training_app.state.mlflow = None
        missing = training.env.client.post(url, json=body, headers=training.env.caller.headers)
        assert missing.status_code == 503 and "ATOLL_MLFLOW_TRACKING_URI" in missing.json()["detail"]
        monitor = training.env.client.get(
            "/api/v1/monitors/scoring-drift", headers=training.env.caller.headers
        )
        assert (monitor.json()["reference_source"], monitor.json()["reference"]) == ("upload", None)
        assert audit_rows(training.env, "monitor.reference") == []
