"""Per-backend builds against a real MLflow server: registration queues one build per backend,
the worker converts, checks parity and profiles latency, the files land on disk and on the run."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from atoll.audit import AuditEvent
from atoll.cli.runtime import job_handlers
from atoll.db import unit_of_work
from atoll.jobs import Job, Worker
from atoll.registry.builds.manifest import PYFUNC_DIR, BuildManifest
from atoll.registry.builds.service import BUILD_JOB
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.settings import Settings

from .conftest import Caller

TREE_TYPES = [  # what skops must trust to load a GradientBoostingClassifier (mlflow 3.17)
    "sklearn.tree._tree.Tree",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
]


def _log_gbc(mlflow_uri: str, *, frame: bool) -> str:
    """A 30-feature GradientBoostingClassifier; input example as a DataFrame or an array."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier

    mlflow.set_tracking_uri(mlflow_uri)
    features, labels = make_classification(n_samples=500, n_features=30, n_informative=12, random_state=1)
    data: Any = pd.DataFrame(features, columns=[f"f{i}" for i in range(30)]) if frame else features
    model = GradientBoostingClassifier(n_estimators=50, random_state=0).fit(data, labels)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=data[:8],
            pip_requirements=["scikit-learn"],
            skops_trusted_types=TREE_TYPES,
        )
    return str(run.info.run_id)


class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.Series:
        return model_input["x"] * 2


def _log_pyfunc(mlflow_uri: str) -> str:
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=Doubler(),
            input_example=pd.DataFrame({"x": [1.0, 2.0, 3.0]}),
            pip_requirements=["pandas"],
        )
    return str(run.info.run_id)


def _register(client: TestClient, caller: Caller, run_id: str, name: str | None = None) -> str:
    name = name or f"b-{uuid.uuid4().hex[:8]}"
    created = client.post(f"/api/v1/models/{name}/versions", headers=caller.headers, json={"run_id": run_id})
    assert created.status_code == 201, created.text
    return name


def build_figures(build: dict[str, Any], original: str) -> dict[str, Any]:
    """The numbers a build test prints: precision, parity, latency against the original."""
    latency = build["latency"]
    return {
        "precision": build["precision"],
        "max_abs_diff": build["parity"]["max_abs_diff"],
        "label_agreement": build["parity"]["label_agreement"],
        "p50_ms_b1": latency["batch_1"]["p50_ms"],
        "p50_ms_b64": latency["batch_64"]["p50_ms"],
        f"{original}_p50_ms_b1": latency["original"]["batch_1"]["p50_ms"],
        f"{original}_p50_ms_b64": latency["original"]["batch_64"]["p50_ms"],
    }


def _drain(factory: sessionmaker[Session], settings: Settings) -> int:
    worker = Worker(factory, job_handlers(settings))
    ran = 0
    while worker.run_once():
        ran += 1
    return ran


def _builds(client: TestClient, caller: Caller, name: str, version: int = 1) -> dict[str, dict[str, Any]]:
    response = client.get(f"/api/v1/models/{name}/versions/{version}/builds", headers=caller.headers)
    assert response.status_code == 200, response.text
    newest: dict[str, dict[str, Any]] = {}
    for build in response.json():
        newest.setdefault(build["backend"], build)
    return newest


def test_registration_queues_one_build_per_backend_and_the_worker_builds_them(
    registry_client: TestClient,
    admin: Caller,
    mlflow_uri: str,
    registry_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    name = _register(registry_client, admin, _log_gbc(mlflow_uri, frame=True))
    queued = _builds(registry_client, admin, name)
    assert sorted(queued) == ["asic", "cpu", "gpu"]
    assert {b["status"] for b in queued.values()} == {"queued"}
    with unit_of_work(session_factory) as session:
        jobs = list(session.scalars(select(Job).where(Job.kind == BUILD_JOB)))
        backends = sorted(j.payload["backend"] for j in jobs if j.payload["model"] == name)
        assert backends == ["asic", "cpu", "gpu"]
        enqueued = select(AuditEvent).where(
            AuditEvent.action == "build.enqueue", AuditEvent.target_id == f"{name}/1"
        )
        assert session.scalar(enqueued) is not None

    started = time.perf_counter()
    assert _drain(session_factory, registry_settings) == 3
    seconds = time.perf_counter() - started
    built = _builds(registry_client, admin, name)
    report = {}
    for backend, build in built.items():
        assert build["status"] == "succeeded", (backend, build["error"])
        assert build["format"] == "onnx"
        assert build["provider"] == "CPUExecutionProvider"
        assert build["parity"]["passed"] is True
        assert build["parity"]["label_agreement"] == 1.0
        assert build["parity"]["sets"]["input_example"]["rows"] == 8
        assert build["parity"]["sets"]["sample"]["rows"] == 256
        assert build["latency"]["batch_1"]["p50_ms"] > 0 and build["latency"]["batch_64"]["p50_ms"] > 0
        directory = Path(build["artifact_uri"])
        assert directory == registry_settings.data_dir.resolve() / "builds" / name / "1" / backend
        manifest = BuildManifest.load(directory)
        assert (directory / "model.onnx").stat().st_size > 0
        assert manifest.backend == backend and manifest.format == "onnx"
        assert manifest.input_columns == [f"f{i}" for i in range(30)] and manifest.n_features == 30
        assert manifest.classes == [0, 1] and manifest.proba_output == "probabilities"
        assert manifest.model_uri == f"models:/{name}/1"
        run_id = MlflowRegistry(mlflow_uri).get_version(name, "1").run_id
        assert run_id is not None
        assert build["mlflow_artifact_uri"] == f"runs:/{run_id}/atoll-builds/{backend}"
        on_run = MlflowRegistry(mlflow_uri).list_artifacts(run_id, f"atoll-builds/{backend}")
        assert sorted(on_run) == [f"atoll-builds/{backend}/build.json", f"atoll-builds/{backend}/model.onnx"]
        report[backend] = build_figures(build, "sklearn")
    print(f"\nGBC-30 builds in {seconds:.1f} s: {json.dumps(report, indent=1)}")

    asic, gpu, cpu = built["asic"], built["gpu"], built["cpu"]
    assert asic["emulated"] is True and asic["precision"] == "int8"
    assert "emulated on the CPU" in asic["note"] and "AsicExecutionProvider" in asic["note"]
    assert BuildManifest.load(Path(asic["artifact_uri"])).emulated is True
    assert BuildManifest.load(Path(asic["artifact_uri"])).runtime_provider == "AsicExecutionProvider"
    assert gpu["emulated"] is False
    assert "CUDAExecutionProvider is not available" in gpu["note"]
    assert "no operator of this graph has an fp16 kernel" in gpu["note"]  # trees stay fp32
    assert cpu["precision"] == "fp32" and cpu["parity"]["max_abs_diff"] < 1e-5

    # the promotion gate reads the newest build per backend
    policy = {"protected": True, "gates": {"builds": ["cpu"]}}
    assert (
        registry_client.put(
            f"/api/v1/models/{name}/policies/production", headers=admin.headers, json=policy
        ).status_code
        == 200
    )
    promoted = registry_client.post(
        f"/api/v1/models/{name}/aliases/production/promote", headers=admin.headers, json={"version": 1}
    )
    assert promoted.status_code == 200, promoted.text
    assert {g["gate"]: g["passed"] for g in promoted.json()["gates"]}["build:cpu"] is True


def test_rebuild_through_the_api_makes_new_builds(
    registry_client: TestClient,
    admin: Caller,
    log_model: Callable[..., str],
    registry_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    name = _register(registry_client, admin, log_model())
    first = _builds(registry_client, admin, name)
    path = f"/api/v1/models/{name}/versions/1/builds"
    response = registry_client.post(path, headers=admin.headers, json={"backends": ["cpu"]})
    assert response.status_code == 202, response.text
    [queued] = response.json()
    assert queued["backend"] == "cpu" and queued["status"] == "queued" and queued["id"] != first["cpu"]["id"]
    everything = registry_client.post(path, headers=admin.headers)
    assert everything.status_code == 202 and len(everything.json()) == 3
    unknown = registry_client.post(path, headers=admin.headers, json={"backends": ["tpu"]})
    assert unknown.status_code == 422 and "'tpu' is not in the catalog" in unknown.json()["detail"]
    missing = registry_client.post(f"/api/v1/models/{name}/versions/9/builds", headers=admin.headers)
    assert missing.status_code == 404

    assert _drain(session_factory, registry_settings) == 7
    listed = registry_client.get(path, headers=admin.headers).json()
    assert len(listed) == 7 and {b["status"] for b in listed} == {"succeeded"}
    logistic = _builds(registry_client, admin, name)["cpu"]
    assert logistic["parity"]["max_abs_diff"] < 1e-5  # LogisticRegression, fp32


def test_a_model_without_an_onnx_converter_gets_a_cpu_only_pyfunc_build(
    registry_client: TestClient,
    admin: Caller,
    mlflow_uri: str,
    registry_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    name = _register(registry_client, admin, _log_pyfunc(mlflow_uri))
    _drain(session_factory, registry_settings)
    built = _builds(registry_client, admin, name)
    for backend, build in built.items():
        assert build["status"] == "succeeded", (backend, build["error"])
        assert build["format"] == "pyfunc" and build["provider"] == "CPUExecutionProvider"
        assert "CPU-only pyfunc build: no ONNX converter for flavor python_function" in build["note"]
        assert build["parity"]["checked"] is False
        assert build["latency"]["batch_1"]["p50_ms"] > 0
        manifest = BuildManifest.load(Path(build["artifact_uri"]))
        assert manifest.format == "pyfunc" and manifest.input_columns == ["x"]
        assert not (Path(build["artifact_uri"]) / "model.onnx").exists()
        assert (Path(build["artifact_uri"]) / PYFUNC_DIR / "MLmodel").is_file()  # what atoll serve loads
    assert "serves it on the CPU, not with CUDAExecutionProvider" in built["gpu"]["note"]


def test_a_too_strict_parity_threshold_fails_the_build_with_the_numbers(
    registry_client: TestClient,
    admin: Caller,
    mlflow_uri: str,
    registry_settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    strict = tmp_path / "backends.toml"
    strict.write_text(
        "[backends.asic]\n"
        'description = "strict test asic"\n'
        'accelerator = "inference-asic"\n'
        'resource = "atoll.dev/asic"\n'
        'precisions = ["int8"]\n'
        'default_precision = "int8"\n'
        'runtime_provider = "AsicExecutionProvider"\n'
        'local_executor = "onnxruntime-cpu-int8-emulation"\n'
        "parity = { max_abs_diff = 1e-12, min_label_agreement = 0.99 }\n"
    )
    settings = registry_settings.model_copy(update={"backends_file": strict})
    name = _register(registry_client, admin, _log_gbc(mlflow_uri, frame=False))
    _drain(session_factory, settings)
    built = _builds(registry_client, admin, name)
    asic = built["asic"]
    assert asic["status"] == "failed"
    assert asic["error"].startswith("parity outside the asic thresholds: max diff ")
    assert "exceeds 1e-12" in asic["error"]
    assert asic["parity"]["passed"] is False and asic["parity"]["max_abs_diff"] > 1e-12
    assert asic["parity"]["thresholds"]["max_abs_diff"] == 1e-12
    failed_dir = Path(asic["artifact_uri"])
    assert failed_dir.parent.name == "failed" and (failed_dir / "model.onnx").exists()
    assert not (failed_dir.parent.parent / "asic").exists(), "a failed build never replaces the served one"
    assert asic["mlflow_artifact_uri"] is None
    assert built["cpu"]["status"] == "succeeded" and built["gpu"]["status"] == "succeeded"

    policy = {"protected": True, "gates": {"builds": ["asic"]}}
    registry_client.put(f"/api/v1/models/{name}/policies/production", headers=admin.headers, json=policy)
    blocked = registry_client.post(
        f"/api/v1/models/{name}/aliases/production/promote", headers=admin.headers, json={"version": 1}
    )
    assert blocked.status_code == 412
    assert {g["gate"]: g["reason"] for g in blocked.json()["gates"]}["build:asic"] == (
        "the newest asic build is failed"
    )


@pytest.mark.parametrize("role", ["viewer"])
def test_rebuilding_needs_the_deployer_scope(
    registry_client: TestClient, admin: Caller, make_caller: Any, log_model: Callable[..., str], role: str
) -> None:
    from atoll.auth.policy import Role

    name = _register(registry_client, admin, log_model())
    viewer = make_caller("watcher", Role(role))
    path = f"/api/v1/models/{name}/versions/1/builds"
    assert registry_client.get(path, headers=viewer.headers).status_code == 200
    assert registry_client.post(path, headers=viewer.headers).status_code == 403


def test_cli_builds_table_rebuild_and_an_uploaded_model_without_input_example(
    live_registry_url: str,
    admin: Caller,
    registry_settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from sklearn.linear_model import LogisticRegression
    from typer.testing import CliRunner

    from atoll.cli import app

    for key in list(os.environ):
        if key.upper().startswith("ATOLL_") and not key.upper().startswith("ATOLL_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    monkeypatch.setenv("ATOLL_URL", live_registry_url)
    monkeypatch.setenv("ATOLL_TOKEN", admin.token)
    features = np.arange(40, dtype=float).reshape(20, 2)
    folder = tmp_path / "no-example"
    mlflow.sklearn.save_model(
        LogisticRegression().fit(features, (features[:, 0] > 20).astype(int)),
        str(folder),
        pip_requirements=["scikit-learn"],
    )
    name = f"cli-b-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()
    registered = runner.invoke(app, ["models", "register", name, "--path", str(folder)])
    assert registered.exit_code == 0, registered.output
    _drain(session_factory, registry_settings)

    shown = runner.invoke(app, ["builds", name, "1"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    for expected in ("asic", "gpu", "cpu", "int8", "CPU", "yes"):
        assert expected in shown.stdout
    listed = json.loads(runner.invoke(app, ["builds", name, "1", "--json"]).stdout)
    assert sorted(b["backend"] for b in listed) == ["asic", "cpu", "gpu"]
    cpu = next(b for b in listed if b["backend"] == "cpu")
    assert "no input example: parity ran on standard-normal rows only" in cpu["note"]
    assert cpu["parity"]["sets"]["sample"]["rows"] == 256 and "input_example" not in cpu["parity"]["sets"]

    rebuilt = runner.invoke(app, ["builds", name, "1", "--rebuild", "--backend", "cpu", "--json"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert [(b["backend"], b["status"]) for b in json.loads(rebuilt.stdout)] == [("cpu", "queued")]
    every = json.loads(runner.invoke(app, ["builds", name, "1", "--all", "--json"]).stdout)
    assert len(every) == 4


def test_atoll_serve_builds_a_registered_version_on_the_fly_and_serves_it(
    registry_client: TestClient, admin: Caller, mlflow_uri: str, database_url: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import time

    import httpx

    from .conftest import free_port

    name = _register(registry_client, admin, _log_gbc(mlflow_uri, frame=True))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOLL_") or k.startswith("ATOLL_TEST_")}
    env.update(ATOLL_DATABASE_URL=database_url, ATOLL_MLFLOW_TRACKING_URI=mlflow_uri, ATOLL_LOG_FORMAT="text")
    log = (tmp_path / "serve.log").open("w")
    command = [sys.executable, "-m", "atoll", "serve", "--model-uri", f"models:/{name}/1", "--backend", "cpu",
               "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        ready = False
        while time.monotonic() < deadline and not ready and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready, (tmp_path / "serve.log").read_text()
        row = {f"f{i}": 0.1 * i for i in range(30)}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [row]}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0] in (0, 1)
    finally:
        process.terminate()
        process.wait(timeout=30)
