"""A whole platform for deployment tests, built once per module: the API, a worker thread,
the local target's supervisor, the router as a process (`atoll router`), a real MLflow, and
two versions of a scikit-learn model built for the cpu backend by the real build job.

Only the cpu builds run (the other backends' queued build jobs are dropped and their build
rows marked failed, which also gives the tests a failed build to refuse); the model is
small, so a model server starts in seconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.auth import service as auth_service
from atoll.auth.policy import Role
from atoll.auth.service import principal_for_user
from atoll.cli.runtime import dead_job_handlers, job_handlers
from atoll.db import make_engine, make_session_factory, unit_of_work
from atoll.deployer.routing.process import RouterProcess
from atoll.deployer.targets.supervisor import LocalSupervisor
from atoll.jobs import Job, Worker
from atoll.registry.builds.service import BUILD_JOB
from atoll.registry.models import Build
from atoll.settings import Settings, load_settings
from atoll.web.app import create_app

from .conftest import Caller, _serve, free_port

N_FEATURES = 4
KEPT_BACKEND = "cpu"


def train(seed: int) -> Any:
    """A logistic regression on 4 features; different seeds give different coefficients."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(200, N_FEATURES))
    labels = (features[:, 0] - 0.5 * features[:, 1] + rng.normal(scale=0.2, size=200) > 0).astype(int)
    return LogisticRegression().fit(features, labels), features


def log_version(mlflow_uri: str, seed: int) -> str:
    mlflow.set_tracking_uri(mlflow_uri)
    model, features = train(seed)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(
            model, name="model", input_example=features[:2], pip_requirements=["scikit-learn"]
        )
    return str(run.info.run_id)


def infer_body(rows: list[list[float]]) -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    return {"inputs": [{"name": "input", "shape": [len(rows), N_FEATURES], "datatype": "FP32", "data": flat}]}


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    app: FastAPI
    api: TestClient
    admin: Caller
    viewer: Caller
    model: str
    router: RouterProcess
    supervisor: LocalSupervisor
    worker: Worker
    api_url: str = ""  # the same app served by uvicorn, for the CLI
    builds: dict[str, int] = field(default_factory=dict)  # "<version>/<backend>" -> build id

    @property
    def router_url(self) -> str:
        return self.router.url

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.api.request(method, path, headers=self.admin.headers, **kwargs)
        return response

    def deploy(self, version: int, **body: Any) -> dict[str, Any]:
        response = self.call(
            "POST",
            "/api/v1/deployments",
            json={"model": self.model, "version": version, "backend": "cpu", **body},
        )
        assert response.status_code == 202, response.text
        found: dict[str, Any] = response.json()
        return found

    def wait_state(self, name: str, *states: str, timeout: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.call("GET", f"/api/v1/deployments/{name}").json()
            if last.get("state") in states:
                return last
            time.sleep(0.2)
        status = self.call("GET", f"/api/v1/deployments/{name}/status").json()
        logs = self.call("GET", f"/api/v1/deployments/{name}/logs", params={"tail": 30}).json()
        pytest.fail(f"{name} not {states} within {timeout} s: {last}\nstatus: {status}\nlogs: {logs}")

    def infer(self, endpoint: str, rows: list[list[float]] | None = None) -> httpx.Response:
        body = infer_body(rows or [[0.5, -0.2, 0.1, 0.3]])
        return httpx.post(f"{self.router_url}/endpoints/{endpoint}/v2/models/{self.model}/infer", json=body)


def _caller(factory: sessionmaker[Session], username: str, role: Role) -> Caller:
    password = f"{username}-password-123"
    with unit_of_work(factory) as session:
        user = auth_service.create_user(session, actor=None, username=username, password=password, role=role)
        actor = principal_for_user(user, via="test")
        issued = auth_service.create_token(
            session, actor=actor, name="test", scopes=sorted(actor.scopes), expires_in_days=None
        )
    return Caller(username, password, issued.secret)


def _build_cpu_only(factory: sessionmaker[Session], settings: Settings) -> None:
    """Run the queued cpu builds; drop the other backends' jobs and mark their builds failed."""
    with unit_of_work(factory) as session:
        for job in session.scalars(select(Job).where(Job.kind == BUILD_JOB, Job.status == "queued")):
            if job.payload["backend"] != KEPT_BACKEND:
                build = session.get(Build, job.payload["build_id"])
                assert build is not None
                build.status, build.error = "failed", "not built: the deployment tests build only cpu"
                session.delete(job)
    worker = Worker(factory, job_handlers(settings))
    while worker.run_once():
        pass


@pytest.fixture(scope="module")
def platform(
    module_database_url: str, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    data_dir = tmp_path_factory.mktemp("deploy-data")
    settings = load_settings(
        data_dir=data_dir,
        database_url=module_database_url,
        mlflow_tracking_uri=mlflow_uri,
        log_format="text",
        router_port=free_port(),
        router_refresh_seconds=0.5,
        kubeconfig=data_dir / "no-such-kubeconfig",
        kube_namespace="models",
    )
    engine = make_engine(module_database_url)
    factory = make_session_factory(engine)
    app = create_app(settings, engine=engine)
    admin = _caller(factory, "deployer-admin", Role.admin)
    viewer = _caller(factory, "deployer-viewer", Role.viewer)
    model = f"dep-{uuid.uuid4().hex[:6]}"
    supervisor = LocalSupervisor.from_settings(settings)
    router = RouterProcess(settings, host="127.0.0.1", port=settings.router_port)
    worker = Worker(
        factory,
        job_handlers(settings),
        poll_seconds=0.1,
        lease=timedelta(seconds=30),
        worker_id="test-worker",
        on_dead=dead_job_handlers(),
    )
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    with TestClient(app, raise_server_exceptions=False) as api:
        for seed in (1, 2):
            created = api.post(
                f"/api/v1/models/{model}/versions",
                headers=admin.headers,
                json={"run_id": log_version(mlflow_uri, seed)},
            )
            assert created.status_code == 201, created.text
        _build_cpu_only(factory, settings)
        found = Platform(
            settings, engine, factory, app, api, admin, viewer, model, router, supervisor, worker
        )
        with unit_of_work(factory) as session:
            for build in session.scalars(select(Build).where(Build.model_name == model)):
                found.builds[f"{build.version}/{build.backend}"] = build.id
                if build.backend == KEPT_BACKEND:
                    assert build.status == "succeeded", build.error
        supervisor.start()
        router.start()
        thread.start()
        serving = _serve(app)
        found.api_url = next(serving)
        try:
            yield found
        finally:
            next(serving, None)
            worker.stop()
            thread.join(timeout=30)
            router.stop()
            supervisor.stop(stop_servers=True)
    engine.dispose()


def load_loop(
    url: str, body: dict[str, Any], *, rate: float, seconds: float, during: Callable[[], None] | None = None
) -> list[tuple[float, int, str | None]]:
    """Send `rate` requests a second for `seconds` (bounded, loopback); call `during` halfway.

    Returns (time, status, X-Atoll-Deployment) per request; a transport error is status 0.
    """
    results: list[tuple[float, int, str | None]] = []
    total = int(rate * seconds)
    started = time.monotonic()
    fired = threading.Event()

    def trigger() -> None:
        if during is not None:
            during()
        fired.set()

    with httpx.Client(timeout=10) as client:
        for index in range(total):
            due = started + index / rate
            time.sleep(max(0.0, due - time.monotonic()))
            if index == total // 2 and during is not None:
                threading.Thread(target=trigger, daemon=True).start()
            try:
                response = client.post(url, json=body)
                results.append(
                    (
                        time.monotonic() - started,
                        response.status_code,
                        response.headers.get("x-atoll-deployment"),
                    )
                )
            except httpx.HTTPError:
                results.append((time.monotonic() - started, 0, None))
    fired.wait(timeout=30)
    return results


def build_dir(platform: Platform, version: int) -> Path:
    with unit_of_work(platform.factory) as session:
        build = session.get(Build, platform.builds[f"{version}/{KEPT_BACKEND}"])
        assert build is not None and build.artifact_uri
        return Path(build.artifact_uri)


@dataclass(frozen=True)
class SplitPair:
    """Two available deployments behind the endpoint `traffic`: blue (v1, serving) and green (v2)."""

    endpoint: str
    blue: str
    green: str


@pytest.fixture(scope="module")
def split_pair(platform: Platform) -> SplitPair:
    pair = SplitPair("traffic", "traffic-blue", "traffic-green")
    platform.deploy(1, endpoint=pair.endpoint, name=pair.blue)
    platform.deploy(2, endpoint=pair.endpoint, name=pair.green, switch=False)
    platform.wait_state(pair.blue, "available")
    platform.wait_state(pair.green, "available")
    return pair


def server_pid(platform: Platform, deployment: str) -> int:
    """The local model server's process id, as the target reports it ("... (pid N)")."""
    status = platform.call("GET", f"/api/v1/deployments/{deployment}/status").json()
    [pod] = status["rollout"]["pods"]
    return int(pod["name"].split("pid ")[1].rstrip(")"))
