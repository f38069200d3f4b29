"""The kubernetes target against a real kube-apiserver + etcd (no controllers): server-side
apply, no-op re-apply, conflicts, dry-run previews, the apiserver's refusals, delete, check.

Assertions read the cluster back with kubectl, not with the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from atoll.deployer.targets.base import ApplyConflict, InvalidManifest
from atoll.deployer.targets.kubernetes import KubernetesTarget
from atoll.errors import Conflict, NotFound
from tests.kube.controlplane import ControlPlane, free_port
from tests.kube.objects import KINDS, live, objects_for, versions

pytestmark = pytest.mark.kubernetes


class TestApply:
    def test_creates_every_object_owned_by_the_atoll_field_manager(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        result = target.apply(objects_for(namespace))
        assert [(o.kind, o.action) for o in result.objects] == [(k, "created") for k in KINDS]
        for kind in KINDS:
            obj = live(kube, namespace, kind, "fraud-ranker-v7-cpu")
            assert obj is not None
            managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
            assert ("atoll", "Apply") in managers
        assert versions(kube, namespace, "fraud-ranker-v7-cpu") == {
            o.kind: o.resource_version for o in result.objects
        }

    def test_applying_twice_changes_nothing(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        target.apply(objects_for(namespace))
        before = versions(kube, namespace, "fraud-ranker-v7-cpu")
        again = target.apply(objects_for(namespace))
        assert [o.action for o in again.objects] == ["unchanged"] * 4
        assert not again.changed
        assert versions(kube, namespace, "fraud-ranker-v7-cpu") == before

    def test_a_new_build_changes_the_objects(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        first = target.apply(objects_for(namespace, version=7))
        second = target.apply(objects_for(namespace, version=8))
        assert [o.action for o in second.objects] == ["changed"] * 4
        assert all(
            a.resource_version != b.resource_version
            for a, b in zip(first.objects, second.objects, strict=True)
        )
        deployment = live(kube, namespace, "Deployment", "fraud-ranker-v7-cpu")
        assert deployment is not None
        assert deployment["spec"]["template"]["metadata"]["labels"]["atoll.dev/model-version"] == "8"


class TestConflicts:
    def test_a_field_someone_else_set_is_a_conflict_that_names_them(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        target.apply(objects_for(namespace, "asic"))  # a fixed count: Atoll owns spec.replicas (2)
        scaled = kube.kubectl("scale", "deployment/fraud-ranker-v7-asic", "--replicas=5", "-n", namespace)
        assert scaled.returncode == 0, scaled.stderr
        before = versions(kube, namespace, "fraud-ranker-v7-asic")

        with pytest.raises(ApplyConflict) as caught:
            target.apply(objects_for(namespace, "asic", version=8))
        error = caught.value
        assert error.status == 409
        assert [c.field for c in error.conflicts] == [".spec.replicas"]
        assert error.conflicts[0].manager.startswith("kubectl")
        assert f".spec.replicas is owned by '{error.conflicts[0].manager}'" in error.detail
        # Nothing half-applied: the dry run refused before any object was written.
        assert versions(kube, namespace, "fraud-ranker-v7-asic") == before

        forced = target.apply(objects_for(namespace, "asic", version=8), force_conflicts=True)
        assert forced.changed
        deployment = live(kube, namespace, "Deployment", "fraud-ranker-v7-asic")
        assert deployment is not None and deployment["spec"]["replicas"] == 2


class TestPreview:
    def test_a_new_deployment_is_all_creates_and_nothing_is_persisted(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        diffs = target.preview(objects_for(namespace))
        assert [(d.kind, d.action) for d in diffs] == [(k, "create") for k in KINDS]
        deployment_diff = diffs[1].diff
        assert "+++ applied/Deployment/fraud-ranker-v7-cpu" in deployment_diff
        # The server's defaults show in the preview: it is the apiserver's own view.
        assert "+        terminationMessagePath: /dev/termination-log" in deployment_diff
        assert versions(kube, namespace, "fraud-ranker-v7-cpu") == {}

    def test_after_apply_the_same_objects_preview_unchanged_and_a_new_build_shows_its_diff(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        target.apply(objects_for(namespace))
        before = versions(kube, namespace, "fraud-ranker-v7-cpu")
        assert [(d.action, d.diff) for d in target.preview(objects_for(namespace))] == [("unchanged", "")] * 4
        diffs = target.preview(objects_for(namespace, version=8))
        assert [d.action for d in diffs] == ["change"] * 4
        assert "-        atoll.dev/model-version: '7'\n+        atoll.dev/model-version: '8'" in diffs[1].diff
        assert "resourceVersion" not in diffs[1].diff and "managedFields" not in diffs[1].diff
        assert versions(kube, namespace, "fraud-ranker-v7-cpu") == before


class TestRefusals:
    def test_the_apiservers_validation_error_names_the_field_and_nothing_is_written(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        with pytest.raises(InvalidManifest) as caught:
            target.apply(objects_for(namespace, cpu_request="2", cpu_limit="1"))
        error = caught.value
        assert error.status == 422
        assert error.detail.startswith("context 'test' (https://127.0.0.1:")
        assert (
            "refused Deployment 'fraud-ranker-v7-cpu': spec.template.spec.containers[0].resources.requests"
            in (error.detail)
        )
        assert "must be less than or equal to cpu limit" in error.detail
        assert any(c["field"].endswith("resources.requests") for c in error.extra["causes"])
        assert versions(kube, namespace, "fraud-ranker-v7-cpu") == {}  # not even the Service

    def test_an_unknown_field_is_refused_not_dropped(self, target: KubernetesTarget, namespace: str) -> None:
        objects = objects_for(namespace)
        objects[1]["spec"]["replica"] = 2
        with pytest.raises(
            InvalidManifest, match=r"replica.*field not declared in schema|unknown field.*replica"
        ):
            target.apply(objects)

    def test_a_namespace_that_does_not_exist(self, kube: ControlPlane) -> None:
        target = KubernetesTarget(kubeconfig=kube.kubeconfig, namespace="no-such-namespace")
        with pytest.raises(NotFound, match="no-such-namespace"):
            target.apply(objects_for("no-such-namespace"))


class TestDelete:
    def test_removes_exactly_what_was_applied(
        self, target: KubernetesTarget, namespace: str, kube: ControlPlane
    ) -> None:
        target.apply(objects_for(namespace, name="first"))
        target.apply(objects_for(namespace, name="second"))
        # Someone else's object carrying the deployment label, but not managed by Atoll.
        foreign = kube.kubectl(
            "create", "configmap", "notes", "-n", namespace, "--from-literal=a=b",
        )  # fmt: skip
        assert foreign.returncode == 0, foreign.stderr
        assert (
            kube.kubectl("label", "configmap/notes", "atoll.dev/deployment=first", "-n", namespace).returncode
            == 0
        )

        deleted = target.delete("first")
        assert [(d.kind, d.name) for d in deleted] == [(k, "first") for k in reversed(KINDS)]
        assert versions(kube, namespace, "first") == {}
        assert set(versions(kube, namespace, "second")) == set(KINDS)
        assert live(kube, namespace, "configmap", "notes") is not None
        assert target.delete("first") == []  # idempotent

    def test_a_bad_name_is_refused_before_any_call(self, target: KubernetesTarget) -> None:
        with pytest.raises(Exception, match="DNS-1123") as caught:
            target.delete("Not_A_Name")
        assert getattr(caught.value, "status", None) == 422


class TestRolloutWithoutControllers:
    def test_status_of_an_unknown_deployment_is_not_found(self, target: KubernetesTarget) -> None:
        with pytest.raises(NotFound, match="'nothing-here' is not on context 'test'"):
            target.status("nothing-here")

    def test_status_before_any_controller_ran_is_progressing(
        self, target: KubernetesTarget, namespace: str
    ) -> None:
        target.apply(objects_for(namespace))
        status = target.status("fraud-ranker-v7-cpu")
        assert (status.phase, status.ready_replicas, status.pods) == ("progressing", 0, [])

    def test_rollback_without_a_previous_revision_is_a_conflict(
        self, target: KubernetesTarget, namespace: str
    ) -> None:
        target.apply(objects_for(namespace))
        with pytest.raises(Conflict, match="no revision before"):
            target.rollback("fraud-ranker-v7-cpu")


class TestCheck:
    def test_a_reachable_target(self, target: KubernetesTarget) -> None:
        health = target.check()
        assert (health.reachable, health.reason) == (True, None)

    def test_an_unreachable_server_is_named(self, kube: ControlPlane, tmp_path: Path) -> None:
        port = free_port()
        config = tmp_path / "kubeconfig"
        config.write_text(kube.kubeconfig.read_text().replace(kube.server, f"https://127.0.0.1:{port}"))
        health = KubernetesTarget(kubeconfig=config, request_timeout=2).check()
        assert not health.reachable
        assert f"cannot reach context 'test' (https://127.0.0.1:{port})" in str(health.reason)

    def test_a_missing_kubeconfig_or_context(self, kube: ControlPlane, tmp_path: Path) -> None:
        missing = KubernetesTarget(kubeconfig=tmp_path / "nope").check()
        assert not missing.reachable and f"kubeconfig {tmp_path / 'nope'}" in str(missing.reason)
        unknown = KubernetesTarget(kubeconfig=kube.kubeconfig, context="prod").check()
        assert not unknown.reachable and "context 'prod' is not in it (contexts: test)" in str(unknown.reason)
