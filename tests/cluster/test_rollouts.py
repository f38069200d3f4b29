"""Rollouts on a whole control plane: the deployment controller, the scheduler, and kwok running
the pods of fake nodes made from the backend catalog (tests/kube/fixtures.py: two GPU nodes
with 4 `nvidia.com/gpu` each, two ASIC nodes with 4 `atoll.dev/asic`, both tainted as the
catalog's tolerations expect, and one untainted CPU node)."""

from __future__ import annotations

import json

import pytest

from atoll.deployer.targets.base import RolloutStatus
from atoll.deployer.targets.kubernetes import KubernetesTarget
from tests.kube.controlplane import ControlPlane
from tests.kube.fixtures import DEVICES_PER_NODE, wait_for
from tests.kube.objects import KINDS, live, objects_for

pytestmark = pytest.mark.cluster


def available(target: KubernetesTarget, name: str, revision: int | None = None) -> RolloutStatus:
    def reached() -> RolloutStatus | None:
        status = target.status(name)
        done = status.phase == "available" and (revision is None or status.revision == revision)
        return status if done else None

    found: RolloutStatus = wait_for(reached, timeout=60)
    return found


@pytest.mark.parametrize(
    ("case", "replicas", "nodes"), [("gpu", 3, {"gpu-1", "gpu-2"}), ("asic", 2, {"asic-1", "asic-2"})]
)
def test_a_device_deployment_lands_only_on_that_devices_nodes(
    target: KubernetesTarget, namespace: str, case: str, replicas: int, nodes: set[str]
) -> None:
    name = f"fraud-ranker-v7-{case}"
    target.apply(objects_for(namespace, case, min_replicas=replicas, max_replicas=replicas))
    status = available(target, name)
    assert len(status.pods) == replicas and all(p.ready for p in status.pods)
    assert {p.node for p in status.pods} <= nodes
    assert (status.ready_replicas, status.desired_replicas) == (replicas, replicas)


def test_more_gpus_than_a_node_has_stays_pending_with_the_schedulers_reason(
    target: KubernetesTarget, namespace: str
) -> None:
    target.apply(
        objects_for(namespace, "gpu", accelerators=DEVICES_PER_NODE + 1, min_replicas=1, max_replicas=1)
    )

    def pending() -> RolloutStatus | None:
        status = target.status("fraud-ranker-v7-gpu")
        return status if status.reason == "Pending" else None

    status: RolloutStatus = wait_for(pending, timeout=60)
    assert status.phase == "progressing"
    assert "cannot be scheduled: 0/5 nodes are available:" in str(status.message)
    assert "2 Insufficient nvidia.com/gpu" in str(status.message)
    assert [p.node for p in status.pods] == [None]
    scheduling = [e for e in status.events if e.reason == "FailedScheduling"]
    assert scheduling and scheduling[-1].type == "Warning"
    assert "Insufficient nvidia.com/gpu" in scheduling[-1].message


def test_a_rollout_reaches_available(target: KubernetesTarget, namespace: str) -> None:
    result = target.apply(objects_for(namespace, "cpu", min_replicas=2, max_replicas=2))
    assert result.changed
    status = available(target, "fraud-ranker-v7-cpu")
    assert (status.revision, status.ready_replicas, status.updated_replicas) == (1, 2, 2)
    assert {p.node for p in status.pods} == {"cpu-1"}  # device nodes are tainted
    assert any(e.reason == "ScalingReplicaSet" for e in status.events)


def test_rollback_restores_the_previous_replicasets_template(
    target: KubernetesTarget, namespace: str, kube: ControlPlane
) -> None:
    name = "fraud-ranker-v7-cpu"
    target.apply(objects_for(namespace, "cpu", version=7, min_replicas=1, max_replicas=1))
    available(target, name, revision=1)
    target.apply(objects_for(namespace, "cpu", version=8, min_replicas=1, max_replicas=1))
    available(target, name, revision=2)

    result = target.rollback(name)
    assert (result.from_revision, result.to_revision) == (2, 1)
    status = available(target, name, revision=3)  # the old ReplicaSet becomes revision 3
    deployment = live(kube, namespace, "Deployment", name)
    assert deployment is not None
    assert deployment["spec"]["template"]["metadata"]["labels"]["atoll.dev/model-version"] == "7"
    assert deployment["metadata"]["labels"]["atoll.dev/model-version"] == "7"
    assert deployment["metadata"]["annotations"]["kubernetes.io/change-cause"].startswith(
        "atoll: fraud-ranker v7"
    )
    replica_sets = json.loads(kube.kubectl("get", "replicasets", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]
    assert len(replica_sets) == 2  # the v7 ReplicaSet was reused, not a third one made
    by_version = {
        rs["spec"]["template"]["metadata"]["labels"]["atoll.dev/model-version"]: rs for rs in replica_sets
    }
    assert by_version["7"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert by_version["7"]["status"]["readyReplicas"] == 1
    assert all(p.ready for p in status.pods if p.name.startswith(by_version["7"]["metadata"]["name"]))
    # Atoll still owns the Deployment's fields: a later deploy of v8 is an ordinary apply.
    again = target.apply(objects_for(namespace, "cpu", version=8, min_replicas=1, max_replicas=1))
    assert again.changed
    available(target, name, revision=4)


def test_reapplying_after_a_deleted_service_recreates_it(
    target: KubernetesTarget, namespace: str, kube: ControlPlane
) -> None:
    objects = objects_for(namespace, "cpu")
    target.apply(objects)
    deleted = kube.kubectl("delete", "service", "fraud-ranker-v7-cpu", "-n", namespace)
    assert deleted.returncode == 0, deleted.stderr

    repaired = target.apply(objects)
    assert [(o.kind, o.action) for o in repaired.objects] == [("Service", "created")] + [
        (kind, "unchanged") for kind in KINDS[1:]
    ]
    service = live(kube, namespace, "Service", "fraud-ranker-v7-cpu")
    assert (
        service is not None
        and service["spec"]["selector"]["app.kubernetes.io/instance"] == "fraud-ranker-v7-cpu"
    )
