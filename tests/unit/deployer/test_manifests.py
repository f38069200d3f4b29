"""Manifests: golden files, kubernetes-validate --strict, and what the validator does not check
(DNS names, selectors matching labels, probes naming a declared port...).

Regenerate the golden files with `ATOLL_TEST_UPDATE_GOLDEN=1 uv run pytest tests/unit/deployer`
and read the diff before committing it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from atoll.deployer.manifests import APPLIED_KINDS, label_value, render, selector_labels
from atoll.deployer.specs import DeploymentSpec, parse_spec
from atoll.errors import InvalidInput
from tests.unit.deployer.cases import CASES, CLUSTER_VERSION, IMAGE, MLFLOW, backend, build

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("ATOLL_TEST_UPDATE_GOLDEN") == "1"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def rendered(case: str) -> list[dict[str, Any]]:
    build_ref, spec = CASES[case]
    return render(build_ref, backend(build_ref.backend), spec)


def as_yaml(objects: list[dict[str, Any]]) -> str:
    text: str = yaml.safe_dump_all(objects, sort_keys=False, width=120)
    return text


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


class TestGolden:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_matches_the_golden_file(self, case: str) -> None:
        path = GOLDEN / f"{case}.yaml"
        text = as_yaml(rendered(case))
        if UPDATE:
            path.write_text(text)
        assert path.exists(), f"no golden file {path}: run with ATOLL_TEST_UPDATE_GOLDEN=1"
        assert text == path.read_text(), f"{case} differs from {path}; regenerate and review the diff"

    def test_golden_files_pass_kubernetes_validate_strict(self) -> None:
        """The CLI itself, on the committed files (what a reviewer would run)."""
        files = sorted(str(p) for p in GOLDEN.glob("*.yaml"))
        assert len(files) == len(CASES)
        result = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", CLUSTER_VERSION, *files],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(" passed for resource ") == sum(len(rendered(c)) for c in CASES)


class TestValidity:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_every_object_is_valid_for_the_cluster_version(self, case: str) -> None:
        for obj in rendered(case):
            kubernetes_validate.validate(obj, CLUSTER_VERSION, strict=True)

    def test_the_validator_does_catch_an_unknown_field(self) -> None:
        """So that the test above can fail: strict mode refuses a misspelt field."""
        deployment = by_kind(rendered("cpu"))["Deployment"]
        deployment["spec"]["replica"] = 2
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, CLUSTER_VERSION, strict=True)

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_names_and_label_values_are_what_the_apiserver_accepts(self, case: str) -> None:
        for obj in rendered(case):
            assert DNS_LABEL.match(obj["metadata"]["name"]) and len(obj["metadata"]["name"]) <= 63
            labels = dict(obj["metadata"]["labels"])
            if obj["kind"] == "Deployment":
                labels |= obj["spec"]["template"]["metadata"]["labels"]
            for key, value in labels.items():
                assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)


class TestSelectors:
    """kubernetes-validate checks shapes, not that these point at each other."""

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_every_selector_matches_the_pod_template(self, case: str) -> None:
        objects = by_kind(rendered(case))
        deployment = objects["Deployment"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selectors = [
            deployment["spec"]["selector"]["matchLabels"],
            objects["Service"]["spec"]["selector"],
            objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        ]
        for selector in selectors:
            assert selector and selector.items() <= pod_labels.items()

    @pytest.mark.parametrize("case", sorted(CASES))
    def test_ports_probes_volumes_and_scale_target_refer_to_what_exists(self, case: str) -> None:
        objects = by_kind(rendered(case))
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        server = pod["containers"][0]
        port_names = {p["name"] for p in server["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert server[probe]["httpGet"]["port"] in port_names
        assert objects["Service"]["spec"]["ports"][0]["targetPort"] in port_names
        volumes = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"] + pod["initContainers"]:
            assert {m["name"] for m in container["volumeMounts"]} <= volumes
            env_names = [e["name"] for e in container["env"]]
            assert len(env_names) == len(set(env_names))
        if "HorizontalPodAutoscaler" in objects:
            target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
            assert (target["kind"], target["name"]) == (
                "Deployment",
                objects["Deployment"]["metadata"]["name"],
            )

    def test_the_selector_does_not_change_with_the_build(self) -> None:
        """A Deployment's selector is immutable: a new version must keep it."""
        _, spec = CASES["gpu"]
        first = render(build("gpu", version=7), backend("gpu"), spec)
        second = render(build("gpu", version=8, build_id=99), backend("gpu"), spec)
        assert (
            by_kind(first)["Deployment"]["spec"]["selector"]
            == by_kind(second)["Deployment"]["spec"]["selector"]
        )
        assert (
            by_kind(first)["Deployment"]["spec"]["template"]
            != by_kind(second)["Deployment"]["spec"]["template"]
        )

    def test_selector_labels_are_a_subset_of_every_objects_labels(self) -> None:
        _, spec = CASES["cpu"]
        for obj in rendered("cpu"):
            assert selector_labels(spec).items() <= obj["metadata"]["labels"].items()


class TestContent:
    def test_gpu_pods_ask_for_the_device_and_go_to_its_nodes_only(self) -> None:
        pod = by_kind(rendered("gpu"))["Deployment"]["spec"]["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"] == {"atoll.dev/accelerator": "nvidia-gpu"}
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert "nvidia.com/gpu" not in pod["initContainers"][0]["resources"]["limits"]

    def test_asic_pods_ask_for_the_catalogs_resource(self) -> None:
        pod = by_kind(rendered("asic"))["Deployment"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["atoll.dev/asic"] == "2"
        assert pod["nodeSelector"] == {"atoll.dev/accelerator": "inference-asic"}

    def test_cpu_pods_have_no_device_and_no_node_selector(self) -> None:
        pod = by_kind(rendered("cpu"))["Deployment"]["spec"]["template"]["spec"]
        assert set(pod["containers"][0]["resources"]["limits"]) == {"cpu", "memory"}
        assert "nodeSelector" not in pod and "tolerations" not in pod

    def test_a_pyfunc_build_runs_on_the_cpu_whatever_its_backend(self) -> None:
        _, spec = CASES["gpu"]
        objects = render(build("gpu", format="pyfunc"), backend("gpu"), spec)
        pod = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
        assert "nodeSelector" not in pod
        assert by_kind(objects)["Deployment"]["metadata"]["labels"]["atoll.dev/backend"] == "gpu"

    def test_the_pod_fetches_the_build_then_serves_it(self) -> None:
        pod = by_kind(rendered("cpu"))["Deployment"]["spec"]["template"]["spec"]
        fetch, server = pod["initContainers"][0], pod["containers"][0]
        assert fetch["command"] + fetch["args"] == [
            "atoll", "builds", "fetch", "runs:/0a1b2c3d4e5f/atoll-builds/cpu", "/var/lib/atoll/build",
        ]  # fmt: skip
        assert server["command"] + server["args"][:2] == ["atoll", "serve", "/var/lib/atoll/build"]
        assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        env = {e["name"]: e["value"] for e in server["env"]}
        assert env["MLFLOW_TRACKING_URI"] == MLFLOW
        assert fetch["envFrom"] == [{"secretRef": {"name": "atoll-database"}}]

    def test_every_container_runs_hardened(self) -> None:
        pod = by_kind(rendered("cpu"))["Deployment"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"] + pod["initContainers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}

    def test_an_autoscaled_deployment_leaves_replicas_to_the_autoscaler(self) -> None:
        objects = by_kind(rendered("cpu"))
        assert "replicas" not in objects["Deployment"]["spec"]
        assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 2

    def test_a_fixed_count_has_replicas_and_no_autoscaler(self) -> None:
        objects = rendered("asic")
        assert [o["kind"] for o in objects] == ["Service", "Deployment", "PodDisruptionBudget"]
        assert by_kind(objects)["Deployment"]["spec"]["replicas"] == 2

    def test_objects_come_in_apply_order_and_share_no_mutable_parts(self) -> None:
        objects = rendered("gpu")
        assert [(o["apiVersion"], o["kind"]) for o in objects] == list(APPLIED_KINDS)
        assert "&id" not in as_yaml(objects)  # no YAML anchors: no dict is shared between objects

    def test_a_build_of_another_backend_is_refused(self) -> None:
        _, spec = CASES["gpu"]
        with pytest.raises(InvalidInput, match="'asic' build"):
            render(build("asic"), backend("gpu"), spec)


class TestNames:
    @pytest.mark.parametrize("name", ["a", "ranker", "ranker-v7-gpu", "r2d2", "a" * 63])
    def test_valid_names(self, name: str) -> None:
        assert parse_spec(name=name, image=IMAGE, mlflow_tracking_uri=MLFLOW).name == name

    @pytest.mark.parametrize(
        "name",
        [
            "",
            "Ranker",
            "ranker_v7",
            "7ranker",
            "ranker-",
            "-ranker",
            "rank.er",
            "a" * 64,
            "ranker v7",
            "rankér",
        ],
    )
    def test_invalid_names_are_a_422_naming_the_field(self, name: str) -> None:
        with pytest.raises(InvalidInput) as caught:
            parse_spec(name=name, image=IMAGE, mlflow_tracking_uri=MLFLOW)
        assert caught.value.extra["field"] == "name"
        assert "DNS-1123" in caught.value.detail

    @pytest.mark.parametrize("namespace", ["Models", "models_1", "-models", "m" * 64])
    def test_invalid_namespaces(self, namespace: str) -> None:
        with pytest.raises(InvalidInput, match="namespace"):
            parse_spec(name="ok", namespace=namespace, image=IMAGE, mlflow_tracking_uri=MLFLOW)

    @given(st.text(max_size=300))
    def test_label_value_is_always_valid(self, text: str) -> None:
        value = label_value(text)
        assert LABEL_VALUE.match(value) and len(value) <= 63

    def test_label_value_keeps_a_valid_name_and_tells_similar_ones_apart(self) -> None:
        assert label_value("fraud-ranker") == "fraud-ranker"
        assert label_value("fraud ranker") != label_value("fraud/ranker")
        assert label_value("fraud ranker").startswith("fraud-ranker-")


class TestSpec:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"min_replicas": 3, "max_replicas": 2}, "below min_replicas"),
            ({"cpu_request": "lots"}, "cpu_request: .*not a Kubernetes quantity"),
            ({"cpu_request": None}, "needs a CPU request"),
            ({"env": {"ATOLL_DATABSE_URL": "x"}}, "ATOLL_DATABSE_URL is not an Atoll setting"),
            ({"env": {"1BAD": "x"}}, "not an environment variable name"),
            ({"env_secret": "Bad_Secret"}, "not a Secret name"),
            ({"mlflow_tracking_uri": "mlflow:5000"}, "http:// or https://"),
            ({"port": 80}, "port"),
        ],
    )
    def test_bad_settings_are_named(self, fields: dict[str, Any], message: str) -> None:
        with pytest.raises(InvalidInput, match=message):
            parse_spec(**{"name": "ok", "image": IMAGE, "mlflow_tracking_uri": MLFLOW, **fields})

    def test_a_known_atoll_setting_is_allowed_in_env(self) -> None:
        spec = DeploymentSpec(
            name="ok", image=IMAGE, mlflow_tracking_uri=MLFLOW, env={"ATOLL_LOG_LEVEL": "DEBUG"}
        )
        assert spec.env == {"ATOLL_LOG_LEVEL": "DEBUG"}
