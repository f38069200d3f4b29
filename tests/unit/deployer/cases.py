"""Builds and deployment settings the manifest tests render: one per default backend."""

from __future__ import annotations

from typing import Literal

from atoll.backends import Backend, load_catalog
from atoll.deployer.specs import BuildRef, DeploymentSpec

IMAGE = "registry.example.com/atoll:1.4.0"
MLFLOW = "http://mlflow.mlops.svc:5000"
# The Kubernetes version the cluster tiers run (scripts/k8s-build.sh); manifests validate against it.
CLUSTER_VERSION = "1.36.0"


def build(
    backend: str, *, version: int = 7, format: Literal["onnx", "pyfunc"] = "onnx", build_id: int = 42
) -> BuildRef:
    return BuildRef(
        id=build_id,
        model_name="fraud-ranker",
        version=version,
        backend=backend,
        format=format,
        mlflow_artifact_uri=f"runs:/0a1b2c3d4e5f/atoll-builds/{backend}",
    )


def backend(name: str) -> Backend:
    return load_catalog().get(name)


CASES: dict[str, tuple[BuildRef, DeploymentSpec]] = {
    # Autoscaled between 2 and 6 on CPU, with an endpoint and a Secret for the database URL.
    "cpu": (
        build("cpu"),
        DeploymentSpec(
            name="fraud-ranker-v7-cpu",
            namespace="models",
            image=IMAGE,
            endpoint="fraud",
            min_replicas=2,
            max_replicas=6,
            mlflow_tracking_uri=MLFLOW,
            env={"ATOLL_LOG_LEVEL": "WARNING"},
            env_secret="atoll-database",
        ),
    ),
    # Autoscaled 1..3, one GPU per pod.
    "gpu": (
        build("gpu"),
        DeploymentSpec(
            name="fraud-ranker-v7-gpu", namespace="models", image=IMAGE, mlflow_tracking_uri=MLFLOW
        ),
    ),
    # A fixed count (no autoscaler): two pods with two ASICs each.
    "asic": (
        build("asic"),
        DeploymentSpec(
            name="fraud-ranker-v7-asic",
            namespace="models",
            image=IMAGE,
            min_replicas=2,
            max_replicas=2,
            accelerators=2,
            cpu_limit=None,
            mlflow_tracking_uri=MLFLOW,
        ),
    ),
}
