"""A deployment's desired state: the spec stored with it, and the target objects rendered from it.

The spec is chosen once per revision (when deploying, from the request and the platform's
settings) and stored; every later apply renders the same objects from it, so a reconcile
or a rollback applies exactly what that revision was.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from atoll.backends import Catalog
from atoll.deployer import local_server, manifests
from atoll.deployer.models import Deployment
from atoll.deployer.specs import BuildRef, DeploymentSpec, parse_spec
from atoll.errors import Conflict, InvalidInput
from atoll.registry.models import Build
from atoll.settings import Settings

Manifest = dict[str, Any]
MAX_NAME = 63


def default_name(model: str, version: int, backend: str) -> str:
    """`MODEL-vVERSION-BACKEND` as a DNS-1123 label (lowercase; a hash keeps long names unique)."""
    suffix = f"-v{version}-{backend}"
    base = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "model"
    if not base[0].isalpha():
        base = f"m-{base}"
    room = MAX_NAME - len(suffix)
    if len(base) > room:
        digest = hashlib.sha256(model.encode()).hexdigest()[:6]
        base = f"{base[: room - 7].rstrip('-')}-{digest}"
    return f"{base}{suffix}"


def build_ref(build: Build) -> BuildRef:
    if not build.mlflow_artifact_uri:
        raise Conflict(
            f"build {build.id} of {build.model_name} v{build.version} ({build.backend}) has no copy in "
            "MLflow (its version has no run), so a pod cannot fetch it: deploy it with --target local, "
            "or register the version from a run and rebuild"
        )
    return BuildRef(
        id=build.id,
        model_name=build.model_name,
        version=build.version,
        backend=build.backend,
        format="pyfunc" if build.format == "pyfunc" else "onnx",
        mlflow_artifact_uri=build.mlflow_artifact_uri,
    )


def local_spec(name: str, build: Build, endpoint: str | None, *, fault_rate: float = 0.0) -> dict[str, Any]:
    directory = Path(build.artifact_uri or "")
    if not build.artifact_uri or not directory.is_dir():
        raise Conflict(
            f"build {build.id} of {build.model_name} v{build.version} ({build.backend}) has no files on "
            f"this machine ({build.artifact_uri or 'no directory recorded'}): rebuild it here "
            f"(atoll builds {build.model_name} {build.version} --rebuild --backend {build.backend})"
        )
    spec = local_server.LocalServerSpec(
        name=name,
        build_dir=str(directory.resolve()),
        build_id=build.id,
        model=build.model_name,
        version=build.version,
        backend=build.backend,
        endpoint=endpoint,
        fault_rate=fault_rate,
    )
    return local_server.dump(spec)


def kubernetes_spec(
    name: str,
    build: Build,
    *,
    endpoint: str | None,
    replicas: int,
    max_replicas: int | None,
    namespace: str,
    settings: Settings,
    fault_rate: float = 0.0,
) -> dict[str, Any]:
    build_ref(build)  # refuses a build a pod cannot fetch, before anything else
    tracking = settings.kube_mlflow_tracking_uri or settings.mlflow_tracking_uri
    if not tracking:
        raise InvalidInput(
            "pods fetch builds from MLflow, and no MLflow is configured for them: set "
            "ATOLL_KUBE_MLFLOW_TRACKING_URI (MLflow as the cluster reaches it)",
            field="target",
        )
    spec = parse_spec(
        name=name,
        namespace=namespace,
        image=settings.deploy_image,
        endpoint=endpoint,
        min_replicas=replicas,
        max_replicas=max(max_replicas or replicas, replicas),
        mlflow_tracking_uri=tracking,
        env={"ATOLL_SERVE_FAULT_RATE": str(fault_rate)} if fault_rate else {},
    )
    return spec.model_dump()


def objects(deployment: Deployment, build: Build, catalog: Catalog) -> list[Manifest]:
    """Every object of the deployment's current revision, in apply order."""
    if deployment.target == "local":
        return [local_server.render(local_server.LocalServerSpec.model_validate(deployment.spec))]
    spec = DeploymentSpec.model_validate(deployment.spec)
    return manifests.render(build_ref(build), catalog.get(build.backend), spec)


def service_address(deployment: Deployment) -> str | None:
    """Where the router reaches a kubernetes deployment: its Service's cluster DNS name."""
    if deployment.target != "kubernetes":
        return None
    spec = DeploymentSpec.model_validate(deployment.spec)
    return f"http://{spec.name}.{spec.namespace}.svc:{spec.port}"
