"""The deployment service on a real kube-apiserver (no controllers, so nothing becomes
available here; tests/cluster watches rollouts): the service applies the objects through
its rollout job, reconcile recreates a deleted Service and finishes a half-applied set
(and says so), undeploy deletes what it applied and nothing else, an unreachable cluster
is a 503 naming it, and a preview writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from atoll.audit import AuditEvent
from atoll.db import unit_of_work
from atoll.deployer import desired, lifecycle, service
from atoll.deployer.lifecycle import DeployerContext
from atoll.deployer.models import DeploymentEvent
from atoll.deployer.reconcile import reconcile
from atoll.deployer.schemas import DeployRequest
from atoll.deployer.targets.base import TargetUnavailable
from atoll.deployer.targets.select import Targets
from atoll.registry.models import Build
from tests.kube.controlplane import ControlPlane, free_port
from tests.kube.objects import live
from tests.kube.service import MODEL, KubePlatform, platform

__all__ = ["platform"]
pytestmark = pytest.mark.kubernetes
KINDS = ("Service", "Deployment", "PodDisruptionBudget")  # a fixed count: no autoscaler


def events(platform: KubePlatform, name: str) -> list[DeploymentEvent]:
    with unit_of_work(platform.factory) as session:
        deployment = lifecycle.get(session, name)
        rows = session.scalars(
            select(DeploymentEvent)
            .where(DeploymentEvent.deployment_id == deployment.id)
            .order_by(DeploymentEvent.id)
        )
        found = list(rows)
        session.expunge_all()
        return found


def test_a_deployment_made_through_the_service_applies_its_objects(
    platform: KubePlatform, kube: ControlPlane, namespace: str
) -> None:
    name = platform.deploy(endpoint="fraud")
    assert name == "fraud-ranker-v7-cpu"
    assert platform.row(name).state == "pending"
    outcome = platform.roll(name, slice_seconds=1.0)
    assert outcome["state"] == "progressing" and "continued_by" in outcome  # no controller here
    deployment = platform.row(name)
    assert deployment.message == "waiting for the deployment controller to see the new spec"
    for kind in KINDS:
        obj = live(kube, namespace, kind, name)
        assert obj is not None, kind
        assert obj["metadata"]["labels"]["atoll.dev/deployment"] == name
        assert ("atoll", "Apply") in {
            (m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]
        }
    spec = live(kube, namespace, "Deployment", name)
    assert spec is not None
    server = spec["spec"]["template"]["spec"]["containers"][0]
    assert server["args"][:2] == ["serve", "/var/lib/atoll/build"] and "--endpoint" in server["args"]
    init = spec["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"] == ["builds", "fetch", "runs:/0a1b2c3d7/atoll-builds/cpu", "/var/lib/atoll/build"]
    assert live(kube, namespace, "HorizontalPodAutoscaler", name) is None
    assert [e.reason for e in events(platform, name)][:3] == ["Created", "Applying", "Progressing"]


def test_reconcile_recreates_a_deleted_service_and_reports_it(
    platform: KubePlatform, kube: ControlPlane, namespace: str
) -> None:
    name = platform.deploy()
    platform.roll(name, slice_seconds=0.5)
    first = live(kube, namespace, "Service", name)
    assert first is not None
    assert kube.kubectl("delete", "service", name, "-n", namespace).returncode == 0
    with unit_of_work(platform.factory) as session:
        report = reconcile(session, platform.context)
    assert report["repaired"][name] == [f"Service/{name} created"], report
    again = live(kube, namespace, "Service", name)
    assert again is not None and again["metadata"]["uid"] != first["metadata"]["uid"]
    repaired = [e for e in events(platform, name) if e.reason == "DriftRepaired"]
    assert repaired and repaired[0].type == "Warning" and f"Service/{name} created" in repaired[0].message
    with unit_of_work(platform.factory) as session:
        audited = session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "deployment.reconcile", AuditEvent.target_id == name
            )
        )
        assert audited is not None and audited.actor == "system"
        report = reconcile(session, platform.context)
    assert name not in report["repaired"]  # nothing drifted since: nothing to say


def test_a_half_applied_set_is_finished_by_reconcile_and_reported(
    platform: KubePlatform, kube: ControlPlane, namespace: str
) -> None:
    """The fault (a worker dying between two objects) is caused by hand: the first object is
    applied, the row is left `applying`, and its job is gone."""
    name = platform.deploy()
    with unit_of_work(platform.factory) as session:
        deployment = lifecycle.get(session, name)
        build = session.get(Build, deployment.build_id)
        assert build is not None
        objects = desired.objects(deployment, build, platform.context.catalog)
        platform.context.targets.get("kubernetes").apply(objects[:1])
        lifecycle.move(session, deployment, "applying", message="applying revision 1")
        deployment.rollout_job_id = None
    assert live(kube, namespace, "Deployment", name) is None
    with unit_of_work(platform.factory) as session:
        report = reconcile(session, platform.context)
    assert report["half_applied"][name] == [
        f"Deployment/{name} created",
        f"PodDisruptionBudget/{name} created",
    ]
    for kind in KINDS:
        assert live(kube, namespace, kind, name) is not None, kind
    half = [e for e in events(platform, name) if e.reason == "HalfApplied"]
    assert half and "left half-applied" in half[0].message and half[0].type == "Warning"
    row = platform.row(name)
    assert row.state == "progressing" and row.rollout_job_id is not None  # watched again


def test_undeploy_deletes_what_it_applied_and_nothing_else(
    platform: KubePlatform, kube: ControlPlane, namespace: str
) -> None:
    name = platform.deploy()
    platform.roll(name, slice_seconds=0.5)
    neighbour = kube.kubectl("create", "service", "clusterip", "neighbour", "--tcp=80:80", "-n", namespace)
    assert neighbour.returncode == 0, neighbour.stderr
    with unit_of_work(platform.factory) as session:
        deleted = service.undeploy(
            session, platform.context, actor=platform.actor, name=name, force=False, reason=""
        )
    assert sorted(deleted) == sorted(f"{k}/{name}" for k in KINDS)
    for kind in KINDS:
        assert live(kube, namespace, kind, name) is None, kind
    assert live(kube, namespace, "Service", "neighbour") is not None
    assert platform.row(name).state == "undeployed"
    with unit_of_work(platform.factory) as session:
        assert reconcile(session, platform.context)["checked"] == 0  # undeployed is not reconciled


def test_preview_is_the_servers_dry_run_and_writes_nothing(
    platform: KubePlatform, kube: ControlPlane, namespace: str
) -> None:
    request = DeployRequest(model=MODEL, version=7, backend="gpu", replicas=2, max_replicas=4)
    with unit_of_work(platform.factory) as session:
        preview = service.preview(session, platform.context, request)
    assert [(o.kind, o.action) for o in preview.objects] == [
        ("Service", "create"),
        ("Deployment", "create"),
        ("HorizontalPodAutoscaler", "create"),
        ("PodDisruptionBudget", "create"),
    ]
    deployment = next(o for o in preview.objects if o.kind == "Deployment")
    assert "nvidia.com/gpu: '1'" in deployment.diff and "uid" not in deployment.diff
    assert live(kube, namespace, "Deployment", "fraud-ranker-v7-gpu") is None


def test_an_unreachable_cluster_is_503_naming_it_before_anything_is_written(
    platform: KubePlatform, kube: ControlPlane, tmp_path: Path
) -> None:
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(kube.kubeconfig.read_text().replace(kube.server, f"https://127.0.0.1:{free_port()}"))
    settings = platform.settings.model_copy(update={"kubeconfig": dead})
    context = DeployerContext(settings, platform.context.catalog, Targets(settings))
    with unit_of_work(platform.factory) as session, pytest.raises(TargetUnavailable) as caught:
        service.deploy(
            session,
            context,
            actor=platform.actor,
            request=DeployRequest(model=MODEL, version=7, backend="cpu"),
        )
    assert caught.value.status == 503
    assert "context 'test'" in caught.value.detail and "unreachable" in caught.value.detail
    with unit_of_work(platform.factory) as session:
        assert service.search(session, limit=10, offset=0)[1] == 0
    health = {h.name: h for h in service.target_health(context)}
    assert not health["kubernetes"].reachable and "context 'test'" in str(health["kubernetes"].reason)
