"""Model deployments to apply in the kubernetes and cluster tiers, and reading them back with kubectl."""

from __future__ import annotations

import json
from typing import Any

from atoll.deployer.manifests import render
from atoll.deployer.specs import DeploymentSpec
from tests.kube.controlplane import ControlPlane
from tests.unit.deployer.cases import CASES, backend, build

KINDS = ["Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"]


def objects_for(
    namespace: str, case: str = "cpu", *, version: int = 7, **changes: Any
) -> list[dict[str, Any]]:
    """The manifests of a test case (tests/unit/deployer/cases.py) in `namespace`, with `changes`."""
    build_ref, spec = CASES[case]
    spec = DeploymentSpec.model_validate({**spec.model_dump(), "namespace": namespace, **changes})
    return render(build(build_ref.backend, version=version), backend(build_ref.backend), spec)


def live(kube: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = kube.kubectl("get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields")
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def versions(kube: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    """resourceVersion of each of the deployment's objects that exists."""
    found = {kind: live(kube, namespace, kind, name) for kind in KINDS}
    return {kind: obj["metadata"]["resourceVersion"] for kind, obj in found.items() if obj}
