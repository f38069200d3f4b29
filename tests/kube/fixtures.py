"""Pytest fixtures over `controlplane`: import them in a tier's conftest.py.

- `control_plane` (session): etcd + kube-apiserver (tier "kubernetes").
- `cluster` (session): the same plus controller-manager, scheduler, kwok and fake nodes made
  from the backend catalog (tier "cluster"); use one of the two per pytest run.
- `namespace` (per test): a fresh namespace on `kube`, deleted afterwards; each tier's
  conftest defines `kube` as `control_plane` or `cluster`.
- `target`: a `KubernetesTarget` on that namespace, through the admin kubeconfig.

Missing binaries fail the tier loudly (never a skip), naming `scripts/k8s-build.sh`. On a
failed test the control plane's log tails are added to the report.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from atoll.backends import load_catalog
from atoll.deployer.targets.kubernetes import KubernetesTarget
from tests.kube.controlplane import KWOK_NODE_ANNOTATION, ControlPlane, ControlPlaneMissing

_RUNNING: list[ControlPlane] = []
NODES_PER_DEVICE = 2
DEVICES_PER_NODE = 4


def _start(tmp_path_factory: pytest.TempPathFactory, *, cluster: bool) -> ControlPlane:
    try:
        plane = ControlPlane(work_dir=tmp_path_factory.mktemp("k8s"))
    except ControlPlaneMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    _RUNNING.append(plane)
    try:
        plane.start()
        if cluster:
            plane.start_cluster()
            _add_fake_nodes(plane)
    except ControlPlaneMissing as exc:
        plane.stop()
        pytest.fail(str(exc), pytrace=False)
    except Exception:
        print(plane.log_tails())
        plane.stop()
        raise
    return plane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = _start(tmp_path_factory, cluster=False)
    yield plane
    plane.stop()
    _RUNNING.remove(plane)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = _start(tmp_path_factory, cluster=True)
    yield plane
    plane.stop()
    _RUNNING.remove(plane)


def fake_nodes() -> list[dict[str, Any]]:
    """Nodes as the catalog expects them: per device backend, labelled with its node selector,
    tainted so only its tolerations land there, with its extended resource; plus a CPU node."""
    nodes = [_node("cpu-1", labels={}, taints=[], extra={})]
    for backend in load_catalog().backends.values():
        if backend.resource is None:
            continue
        taints = [
            {"key": t.key, "effect": t.effect or "NoSchedule", **({"value": t.value} if t.value else {})}
            for t in backend.tolerations
        ]
        for index in range(1, NODES_PER_DEVICE + 1):
            nodes.append(
                _node(
                    f"{backend.name}-{index}",
                    labels=dict(backend.node_selector),
                    taints=taints,
                    extra={backend.resource: str(DEVICES_PER_NODE)},
                )
            )
    return nodes


def _node(
    name: str, *, labels: dict[str, str], taints: list[dict[str, str]], extra: dict[str, str]
) -> dict[str, Any]:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", **extra}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok", **labels},
        },
        "spec": {"taints": taints},
        "status": {"allocatable": resources, "capacity": resources},
    }


def _add_fake_nodes(plane: ControlPlane) -> None:
    for node in fake_nodes():
        created = plane.kubectl("create", "-f", "-", input_text=json.dumps(node))
        assert created.returncode == 0, created.stderr
    ready = plane.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
    assert ready.returncode == 0, f"fake nodes not Ready: {ready.stderr}\n{plane.log_tails()}"


def _namespace_name(node_name: str) -> str:
    readable = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"{readable}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube: ControlPlane) -> Iterator[str]:
    """A fresh namespace; `kube` is the tier's plane (its conftest aliases control_plane or cluster)."""
    name = _namespace_name(request.node.name)
    created = kube.kubectl("create", "namespace", name)
    assert created.returncode == 0, created.stderr
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def target(kube: ControlPlane, namespace: str) -> KubernetesTarget:
    return KubernetesTarget(kubeconfig=kube.kubeconfig, namespace=namespace)


def wait_for(condition: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll `condition()` until it returns something truthy; return it (or fail with the last value)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s; last value: {value!r}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.failed and _RUNNING:
        report.sections.append(("control plane logs (tails)", "\n".join(p.log_tails() for p in _RUNNING)))
    return report
