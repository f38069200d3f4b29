"""deploy/base applied to a real apiserver, then used: the deployer works as its ServiceAccount
through the Role (and is refused outside its namespace)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from atoll.deployer.targets.base import TargetUnavailable
from atoll.deployer.targets.kubernetes import KubernetesTarget
from tests.kube.controlplane import ROOT, ControlPlane
from tests.kube.objects import objects_for

pytestmark = pytest.mark.kubernetes


def base_objects(kube: ControlPlane) -> list[dict[str, Any]]:
    rendered = kube.kubectl("kustomize", str(ROOT / "deploy" / "base"))
    assert rendered.returncode == 0, rendered.stderr
    return [o for o in yaml.safe_load_all(rendered.stdout) if o]


def service_account_kubeconfig(kube: ControlPlane, namespace: str, path: Path) -> Path:
    token = kube.kubectl("create", "token", "atoll", "-n", namespace, "--duration=1h")
    assert token.returncode == 0, token.stderr
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: atoll\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {kube.server}\n"
        f"    certificate-authority: {kube.certs.ca_cert}\n"
        f"users:\n- name: atoll\n  user:\n    token: {token.stdout.strip()}\n"
        f"contexts:\n- name: atoll\n  context:\n    cluster: test\n    user: atoll\n    namespace: {namespace}\n"
    )
    return path


def test_the_base_applies_server_side_and_reapplies_as_a_no_op(
    target: KubernetesTarget, namespace: str, kube: ControlPlane
) -> None:
    objects = base_objects(kube)
    assert {o["kind"] for o in objects} == {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"}
    first = target.apply(objects)
    assert {o.action for o in first.objects} == {"created"}
    assert len(first.objects) == len(objects) == 8
    assert not target.apply(objects).changed
    server = json.loads(
        kube.kubectl("get", "deployment", "atoll-server", "-n", namespace, "-o", "json").stdout
    )
    assert server["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/atoll:latest"
    assert server["metadata"]["labels"]["app.kubernetes.io/part-of"] == "atoll"


def test_the_deployer_works_through_the_role_and_only_in_its_namespace(
    target: KubernetesTarget, namespace: str, kube: ControlPlane, tmp_path: Path
) -> None:
    target.apply(base_objects(kube))
    config = service_account_kubeconfig(kube, namespace, tmp_path / "atoll.kubeconfig")
    as_atoll = KubernetesTarget(kubeconfig=config)  # the namespace comes from the context
    assert as_atoll.check().reachable
    assert as_atoll.namespace == namespace

    objects = objects_for(namespace)
    assert [d.action for d in as_atoll.preview(objects)] == ["create"] * 4
    assert {o.action for o in as_atoll.apply(objects).objects} == {"created"}
    assert not as_atoll.apply(objects).changed
    assert as_atoll.status("fraud-ranker-v7-cpu").phase == "progressing"
    assert as_atoll.logs("fraud-ranker-v7-cpu") == []
    assert len(as_atoll.delete("fraud-ranker-v7-cpu")) == 4

    elsewhere = KubernetesTarget(kubeconfig=config, namespace="default")
    health = elsewhere.check()
    assert not health.reachable and "forbidden" in str(health.reason)
    with pytest.raises(TargetUnavailable, match="the Role in deploy/"):
        elsewhere.apply(objects_for("default"))
