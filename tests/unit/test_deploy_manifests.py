"""deploy/base (Atoll itself on Kubernetes), offline: schema-valid for the cluster version, every
file listed, selectors and references consistent, and the Role no wider than the deployer.
The kubernetes tier applies the same base to a real apiserver and deploys through the Role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.deployer.cases import CLUSTER_VERSION

BASE = Path(__file__).resolve().parents[2] / "deploy" / "base"


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return loaded


def objects() -> list[dict[str, Any]]:
    found = []
    for name in kustomization()["resources"]:
        found += [o for o in yaml.safe_load_all((BASE / name).read_text()) if o]
    return found


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in objects() if o["kind"] == kind]


def test_every_yaml_file_is_a_listed_resource() -> None:
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert files == set(kustomization()["resources"])


@pytest.mark.parametrize("name", sorted(kustomization()["resources"]))
def test_every_object_is_valid_strict(name: str) -> None:
    for obj in yaml.safe_load_all((BASE / name).read_text()):
        kubernetes_validate.validate(obj, CLUSTER_VERSION, strict=True)


def test_server_worker_and_router_are_there() -> None:
    assert {d["metadata"]["name"] for d in of_kind("Deployment")} == {
        "atoll-server",
        "atoll-worker",
        "atoll-router",
    }
    assert {s["metadata"]["name"] for s in of_kind("Service")} == {"atoll-server", "atoll-router"}


def test_selectors_match_and_services_reach_a_declared_port() -> None:
    templates = {}
    for deployment in of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        templates[deployment["metadata"]["name"]] = deployment["spec"]["template"]
    for service in of_kind("Service"):
        matching = [
            t
            for t in templates.values()
            if service["spec"]["selector"].items() <= t["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in matching[0]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_the_role_grants_only_what_the_deployer_uses() -> None:
    (role,) = of_kind("Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    write = {"get", "list", "create", "patch", "delete"}
    read = {"get", "list"}
    expected = (
        {("apps", "deployments", v) for v in write}
        | {("apps", "replicasets", v) for v in read}
        | {("", "services", v) for v in write}
        | {("autoscaling", "horizontalpodautoscalers", v) for v in write}
        | {("policy", "poddisruptionbudgets", v) for v in write}
        | {("", "pods", v) for v in read}
        | {("", "events", v) for v in read}
        | {("", "pods/log", "get")}
    )
    assert granted == expected
    assert not [r for r in role["rules"] if "*" in r["verbs"] or "*" in r["resources"]]


def test_the_binding_ties_the_role_to_the_service_account_the_deployer_runs_as() -> None:
    (binding,) = of_kind("RoleBinding")
    (account,) = of_kind("ServiceAccount")
    assert binding["roleRef"]["name"] == of_kind("Role")[0]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    uses_account = {
        d["metadata"]["name"]
        for d in of_kind("Deployment")
        if d["spec"]["template"]["spec"].get("serviceAccountName") == account["metadata"]["name"]
    }
    assert uses_account == {"atoll-server", "atoll-worker"}  # the router never calls the API


def test_the_router_is_stateless_with_a_stated_staleness_bound() -> None:
    """Any replica routes any request alike: no volume but scratch, several replicas, and the
    endpoint table re-read every second (the bound on how stale a weight change can be)."""
    [router] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "atoll-router"]
    spec = router["spec"]["template"]["spec"]
    assert router["spec"]["replicas"] >= 2
    assert all(set(volume) == {"name", "emptyDir"} for volume in spec.get("volumes", []))
    [container] = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert float(env["ATOLL_ROUTER_REFRESH_SECONDS"]) <= 1.0
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # not ready while the table is stale
