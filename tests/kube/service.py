"""The deployment service over a test control plane: a platform database with builds, and a
`DeployerContext` whose kubernetes target is the test namespace.

The builds are rows, not build jobs: on these tiers nothing runs a model (kwok plays the
kubelet; pods never start a container), so what the service needs is a succeeded build
with an MLflow artifact URI for the init container, and that is what the rows say.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from atoll.auth import service as auth_service
from atoll.auth.policy import Principal, Role
from atoll.auth.service import principal_for_user
from atoll.backends import load_catalog
from atoll.db import make_engine, make_session_factory, unit_of_work, utcnow
from atoll.deployer import lifecycle, rollouts, service
from atoll.deployer.lifecycle import DeployerContext
from atoll.deployer.models import Deployment
from atoll.deployer.schemas import DeployRequest
from atoll.deployer.targets.kubernetes import KubernetesTarget
from atoll.deployer.targets.select import Targets
from atoll.jobs import Job
from atoll.registry.models import Build
from atoll.settings import Settings, load_settings
from tests.kube.controlplane import ControlPlane

MODEL = "fraud-ranker"


@dataclass
class KubePlatform:
    settings: Settings
    context: DeployerContext
    factory: sessionmaker[Session]
    actor: Principal
    namespace: str
    builds: dict[str, int]  # "<version>/<backend>" -> build id

    def deploy(self, version: int = 7, backend: str = "cpu", **fields: Any) -> str:
        request = DeployRequest(model=MODEL, version=version, backend=backend, **fields)
        with unit_of_work(self.factory) as session:
            return service.deploy(session, self.context, actor=self.actor, request=request).name

    def roll(self, name: str, *, slice_seconds: float = 60.0) -> dict[str, Any]:
        """Run the deployment's queued rollout job (as the worker would), until it ends or the slice does."""
        with unit_of_work(self.factory) as session:
            deployment = lifecycle.get(session, name)
            job = session.get(Job, deployment.rollout_job_id)
            assert job is not None
            payload = dict(job.payload)
            job.status = "succeeded"  # taken by this test instead of a worker
        with unit_of_work(self.factory) as session:
            return rollouts.run_rollout(
                session, self.context, payload, slice_seconds=slice_seconds, poll_seconds=0.2
            )

    def row(self, name: str) -> Deployment:
        with unit_of_work(self.factory) as session:
            found = lifecycle.get(session, name)
            session.expunge(found)
            return found


def _seed_builds(factory: sessionmaker[Session]) -> dict[str, int]:
    found = {}
    with unit_of_work(factory) as session:
        for version in (7, 8):
            for backend in ("cpu", "gpu"):
                build = Build(
                    model_name=MODEL,
                    version=version,
                    backend=backend,
                    status="succeeded",
                    format="onnx",
                    precision="fp32",
                    artifact_uri=None,
                    mlflow_artifact_uri=f"runs:/0a1b2c3d{version}/atoll-builds/{backend}",
                    finished_at=utcnow(),
                )
                session.add(build)
                session.flush()
                found[f"{version}/{backend}"] = build.id
    return found


def make_platform(
    kube: ControlPlane, namespace: str, database_url: str, data_dir: Path, kubeconfig: Path | None = None
) -> tuple[KubePlatform, Engine]:
    settings = load_settings(
        data_dir=data_dir,
        database_url=database_url,
        deploy_target="kubernetes",
        kubeconfig=kubeconfig or kube.kubeconfig,
        kube_namespace=namespace,
        mlflow_tracking_uri="http://mlflow.mlops.svc:5000",
        deploy_image="registry.example.com/atoll:1.4.0",
    )
    target = KubernetesTarget(kubeconfig=kubeconfig or kube.kubeconfig, namespace=namespace)
    context = DeployerContext(settings, load_catalog(), Targets(settings, kubernetes=target))
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        user = auth_service.create_user(
            session, actor=None, username="kube-deployer", password="kube-deployer-pw-123", role=Role.engineer
        )
        actor = principal_for_user(user, via="test")
    return KubePlatform(settings, context, factory, actor, namespace, _seed_builds(factory)), engine


@pytest.fixture
def platform(kube: ControlPlane, namespace: str, database_url: str, tmp_path: Path) -> Iterator[KubePlatform]:
    found, engine = make_platform(kube, namespace, database_url, tmp_path / "data")
    yield found
    engine.dispose()
