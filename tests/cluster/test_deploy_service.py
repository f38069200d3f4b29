"""The deployment service on a whole control plane (controllers, scheduler, kwok's fake GPU
and ASIC nodes): a rollout through the service and its job reaches available and switches
the endpoint; a scaled-away Deployment is scaled back by reconcile; asking for more GPUs
than exist shows the scheduler's reason on the deployment; rollback restores the previous
revision's ReplicaSet.
"""

from __future__ import annotations

import json
import time

import pytest

from atoll.db import unit_of_work
from atoll.deployer import endpoints, service
from atoll.deployer.reconcile import reconcile
from tests.kube.controlplane import ControlPlane
from tests.kube.objects import live
from tests.kube.service import KubePlatform, platform

__all__ = ["platform"]
pytestmark = pytest.mark.cluster


def test_a_rollout_through_the_service_reaches_available_and_switches_the_endpoint(
    platform: KubePlatform, namespace: str
) -> None:
    name = platform.deploy(endpoint="fraud", replicas=2)
    outcome = platform.roll(name)
    assert outcome["state"] == "available" and outcome["switched"] == "fraud", outcome
    row = platform.row(name)
    assert row.address == f"http://{name}.{namespace}.svc:8080"
    assert row.message == "2/2 ready"
    with unit_of_work(platform.factory) as session:
        endpoint = endpoints.get(session, "fraud")
        assert endpoints.weights(session, endpoint) == {name: 100}
        status = service.live_status(session, platform.context, name)
    assert status.rollout is not None and len(status.rollout.pods) == 2
    assert all(p.ready and p.node == "cpu-1" for p in status.rollout.pods)


def test_reconcile_scales_a_scaled_away_deployment_back(
    platform: KubePlatform, kube: ControlPlane, namespace: str
) -> None:
    name = platform.deploy()
    assert platform.roll(name)["state"] == "available"
    scaled = kube.kubectl("scale", f"deployment/{name}", "--replicas=0", "-n", namespace)
    assert scaled.returncode == 0, scaled.stderr
    with unit_of_work(platform.factory) as session:
        report = reconcile(session, platform.context)
    assert report["repaired"][name] == [f"Deployment/{name} changed"], report
    deployment = live(kube, namespace, "Deployment", name)
    assert deployment is not None and deployment["spec"]["replicas"] == 1
    owners = {m["manager"] for m in deployment["metadata"]["managedFields"] if "f:spec" in json.dumps(m)}
    assert "atoll" in owners
    assert platform.row(name).state == "progressing"
    assert platform.roll(name)["state"] == "available"  # the re-watch the repair queued


def test_more_gpus_than_exist_shows_the_schedulers_reason_on_the_deployment(platform: KubePlatform) -> None:
    name = platform.deploy(backend="gpu", replicas=9)  # 2 nodes x 4 GPUs, one GPU per pod
    deadline = time.monotonic() + 60
    row = platform.row(name)
    while time.monotonic() < deadline:
        platform.roll(name, slice_seconds=3)
        row = platform.row(name)
        if row.reason == "Pending":
            break
        time.sleep(0.5)
    assert row.state == "progressing" and row.reason == "Pending", (row.state, row.reason, row.message)
    assert "cannot be scheduled: 0/5 nodes are available:" in str(row.message)
    assert "Insufficient nvidia.com/gpu" in str(row.message)


def test_rollback_through_the_service_restores_the_previous_replicaset(
    platform: KubePlatform, kube: ControlPlane, namespace: str
) -> None:
    name = platform.deploy(version=7, name="fraud-main")
    assert platform.roll(name)["state"] == "available"
    platform.deploy(version=8, name="fraud-main")
    assert platform.roll(name)["state"] == "available"
    with unit_of_work(platform.factory) as session:
        rolled = service.rollback(
            session, platform.context, actor=platform.actor, name=name, reason="v8 regressed"
        )
        assert (rolled.revision, rolled.version) == (3, 7)
    assert platform.roll(name)["state"] == "available"
    deployment = live(kube, namespace, "Deployment", name)
    assert deployment is not None
    assert deployment["spec"]["template"]["metadata"]["labels"]["atoll.dev/model-version"] == "7"
    replica_sets = json.loads(kube.kubectl("get", "replicasets", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]
    assert len(replica_sets) == 2  # v7's ReplicaSet came back; no third one
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
