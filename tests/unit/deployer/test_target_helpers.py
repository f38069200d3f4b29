"""The kubernetes target's pure parts: apiserver refusals, field sets, rollout status, diffs.

The Status bodies are the apiserver's shapes (the kubernetes tier checks the same paths
against a real one); these cover the variants a real server is hard to provoke into.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from atoll.deployer.targets.base import ApplyConflict, FieldConflict, InvalidManifest, TargetUnavailable
from atoll.deployer.targets.diff import object_diff
from atoll.deployer.targets.fieldset import extract
from atoll.deployer.targets.problems import error_for, field_conflicts
from atoll.deployer.targets.rollout import classify
from atoll.errors import Conflict, NotFound

ROOT = Path(__file__).resolve().parents[3]


def status_body(code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None) -> str:
    details = {"name": "ranker", "kind": "deployments", "causes": causes} if causes is not None else {}
    return json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code,
        }
    )


class TestProblems:
    def test_a_conflict_names_each_field_and_its_manager(self) -> None:
        body = status_body(
            409,
            "Conflict",
            'Apply failed with 2 conflicts: conflicts with "kubectl-edit" using apps/v1:\n- .spec.replicas\n'
            "- .spec.template.spec.containers[name=\"server\"].image",
            [
                {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-edit" using apps/v1',
                 "field": ".spec.replicas"},
                {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl-edit" using apps/v1',
                 "field": '.spec.template.spec.containers[name="server"].image'},
            ],
        )  # fmt: skip
        error = error_for(409, body, "Deployment 'ranker'", "context 'prod'")
        assert isinstance(error, ApplyConflict) and error.status == 409
        assert error.conflicts == [
            FieldConflict("kubectl-edit", ".spec.replicas"),
            FieldConflict("kubectl-edit", '.spec.template.spec.containers[name="server"].image'),
        ]
        assert ".spec.replicas is owned by 'kubectl-edit'" in error.detail
        assert "force" in error.detail

    def test_without_causes_the_message_is_parsed(self) -> None:
        one = {"message": 'Apply failed with 1 conflict: conflict with "helm" using v1: .spec.ports'}
        many = {
            "message": 'Apply failed with 2 conflicts: conflicts with "kubectl" using apps/v1:\n- .a\n- .b'
        }
        assert field_conflicts(one) == [FieldConflict("helm", ".spec.ports")]
        assert field_conflicts(many) == [FieldConflict("kubectl", ".a"), FieldConflict("kubectl", ".b")]

    def test_another_409_is_a_plain_conflict(self) -> None:
        error = error_for(409, status_body(409, "AlreadyExists", "already exists"), "Service 'a'", "x")
        assert type(error) is Conflict and "already exists" in error.detail

    def test_an_invalid_object_lists_each_field(self) -> None:
        body = status_body(
            422,
            "Invalid",
            'Deployment.apps "ranker" is invalid: [spec.template.spec.containers[0].image: Required value, ...]',
            [
                {"reason": "FieldValueRequired", "message": "Required value",
                 "field": "spec.template.spec.containers[0].image"},
                {"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0",
                 "field": "spec.replicas"},
            ],
        )  # fmt: skip
        error = error_for(422, body, "Deployment 'ranker'", "context 'prod'")
        assert isinstance(error, InvalidManifest) and error.status == 422
        assert error.detail == (
            "context 'prod' refused Deployment 'ranker': spec.template.spec.containers[0].image: Required value; "
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        )
        assert error.extra["causes"][1]["field"] == "spec.replicas"

    def test_a_strict_decoding_error_is_invalid_too(self) -> None:
        body = status_body(400, "BadRequest", ".spec.replica: field not declared in schema")
        error = error_for(400, body, "Deployment 'ranker'", "x")
        assert isinstance(error, InvalidManifest) and "field not declared in schema" in error.detail

    @pytest.mark.parametrize(
        ("code", "kind"), [(403, TargetUnavailable), (500, TargetUnavailable), (404, NotFound)]
    )
    def test_other_refusals(self, code: int, kind: type[Exception]) -> None:
        error = error_for(code, status_body(code, "X", "the reason"), "Deployment 'ranker'", "context 'prod'")
        assert type(error) is kind and "the reason" in error.detail

    def test_a_body_that_is_not_a_status(self) -> None:
        error = error_for(502, "<html>Bad gateway</html>", "Service 'a'", "context 'prod'")
        assert isinstance(error, TargetUnavailable) and "Bad gateway" in error.detail


def _managed(fields: dict[str, Any], manager: str = "atoll") -> dict[str, Any]:
    return {"manager": manager, "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
            "fieldsV1": fields}  # fmt: skip


class TestFieldset:
    def test_extract_keeps_only_the_managers_fields(self) -> None:
        live = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "ranker", "namespace": "m", "uid": "u", "resourceVersion": "9",
                "labels": {"a": "1", "theirs": "x"},
                "managedFields": [
                    _managed({"f:metadata": {"f:labels": {"f:a": {}}},
                              "f:spec": {"f:template": {"f:spec": {"f:containers": {
                                  'k:{"name":"server"}': {".": {}, "f:name": {}, "f:image": {},
                                                          "f:args": {}}}}}}}),
                    _managed({"f:metadata": {"f:labels": {"f:theirs": {}}}, "f:spec": {"f:replicas": {}}},
                             manager="kubectl"),
                ],
            },
            "spec": {
                "replicas": 5,
                "template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "theirs"},
                    {"name": "server", "image": "atoll:1", "args": ["serve"], "terminationMessagePath": "/dev"},
                ]}},
            },
            "status": {"replicas": 5},
        }  # fmt: skip
        assert extract(live, "atoll") == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "ranker", "namespace": "m", "labels": {"a": "1"}},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "server", "image": "atoll:1", "args": ["serve"]}]}
                }
            },
        }

    def test_set_members_and_a_manager_with_no_fields(self) -> None:
        live = {
            "apiVersion": "v1", "kind": "Thing",
            "metadata": {"name": "t", "managedFields": [_managed({"f:metadata": {"f:finalizers": {'v:"a"': {}}}})],
                         "finalizers": ["a", "b"]},
        }  # fmt: skip
        assert extract(live, "atoll")["metadata"]["finalizers"] == ["a"]
        assert extract(live, "nobody") == {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t"}}


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "ranker",
            "generation": 2,
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, **status},
    }


def pod(name: str, *, hash_: str = "new", phase: str = "Running", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"pod-template-hash": hash_}},
        "spec": {"nodeName": "gpu-1"} if phase == "Running" else {},
        "status": {"phase": phase, **status},
    }


def crash_loop(restarts: int = 4) -> dict[str, Any]:
    return {"containerStatuses": [{
        "name": "server", "restartCount": restarts,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }]}  # fmt: skip


class TestRolloutStatus:
    def test_available(self) -> None:
        status = classify(
            deployment(replicas=2, updatedReplicas=2, availableReplicas=2, readyReplicas=2), [], []
        )
        assert (status.phase, status.reason, status.revision, status.ready_replicas) == (
            "available",
            None,
            2,
            2,
        )

    def test_waiting_for_updated_and_available_replicas(self) -> None:
        assert "1 of 2 replicas updated" in str(classify(deployment(updatedReplicas=1), [], []).message)
        partly = classify(deployment(replicas=2, updatedReplicas=2, availableReplicas=1), [], [])
        assert (partly.phase, partly.message) == ("progressing", "1 of 2 updated replicas are available")
        old = classify(deployment(replicas=3, updatedReplicas=2, availableReplicas=2), [], [])
        assert old.message == "1 old replicas are pending termination"

    def test_not_yet_observed(self) -> None:
        unseen = deployment(updatedReplicas=2, availableReplicas=2)
        unseen["status"]["observedGeneration"] = 1
        assert classify(unseen, [], []).phase == "progressing"

    def test_progress_deadline_exceeded_is_failed(self) -> None:
        stuck = deployment(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                        "message": 'ReplicaSet "ranker-abc" has timed out progressing.'}])  # fmt: skip
        status = classify(stuck, [], [])
        assert (status.phase, status.reason) == ("failed", "ProgressDeadlineExceeded")
        assert "timed out progressing" in str(status.message)

    def test_crash_loop_of_the_new_revision_is_failed(self) -> None:
        status = classify(deployment(updatedReplicas=1), [pod("ranker-new-1", **crash_loop())], [], "new")
        assert (status.phase, status.reason) == ("failed", "CrashLoopBackOff")
        assert "server exited with code 1" in str(status.message)
        assert status.pods[0].restarts == 4

    def test_a_crash_loop_of_an_old_revision_does_not_fail_the_rollout(self) -> None:
        status = classify(
            deployment(updatedReplicas=1), [pod("ranker-old-1", hash_="old", **crash_loop())], [], "new"
        )
        assert status.phase == "progressing"

    def test_unschedulable_is_pending_with_the_schedulers_reason(self) -> None:
        message = "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match selector."
        pending = pod("ranker-new-1", phase="Pending", conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}])  # fmt: skip
        event = {"metadata": {"name": "e"}, "type": "Warning", "reason": "FailedScheduling", "message": message,
                 "involvedObject": {"kind": "Pod", "name": "ranker-new-1"}, "count": 3,
                 "lastTimestamp": "2026-12-01T10:00:00Z"}  # fmt: skip
        status = classify(deployment(updatedReplicas=1), [pending], [event], "new")
        assert (status.phase, status.reason) == ("progressing", "Pending")
        assert message in str(status.message)
        assert status.events[0].reason == "FailedScheduling" and status.events[0].count == 3
        assert status.pods[0].reason == "Unschedulable"


class TestDiff:
    def test_create_change_and_unchanged(self) -> None:
        metadata: dict[str, Any] = {"name": "a", "uid": "1", "resourceVersion": "5", "managedFields": [{}]}
        would_be: dict[str, Any] = {"kind": "Service", "metadata": metadata, "spec": {"port": 80}}
        assert object_diff(None, would_be).action == "create"
        assert "+  port: 80" in object_diff(None, would_be).diff
        live = {**would_be, "metadata": {**metadata, "resourceVersion": "4"}, "status": {"x": 1}}
        assert object_diff(live, would_be).action == "unchanged"
        changed = object_diff({**live, "spec": {"port": 81}}, would_be)
        assert changed.action == "change"
        assert "-  port: 81\n+  port: 80" in changed.diff


def test_only_the_kubernetes_target_imports_the_kubernetes_client() -> None:
    importers = []
    for folder in ("platform", "registry", "deployer", "abtest", "monitoring", "web", "migrations"):
        for source in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                    importers.append(str(source.relative_to(ROOT)))
    assert sorted(set(importers)) == ["deployer/targets/kubernetes.py"]
