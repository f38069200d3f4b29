"""Promotion gates, lineage and webhook signatures: pure functions, tested exhaustively."""

from __future__ import annotations

import pytest

from atoll.auth.policy import Role
from atoll.registry import webhooks
from atoll.registry.gates import EvidenceFact, GateFacts, evaluate
from atoll.registry.lineage import ci_lineage, lineage_from_tags, lineage_tags
from atoll.registry.schemas import Gates, MetricGate


def facts(**overrides: object) -> GateFacts:
    base: dict[str, object] = {
        "actor": "ada",
        "actor_role": Role.approver,
        "alias": "production",
        "builds": {},
        "run_metrics": {"auc": 0.91},
        "evidence": [],
    }
    return GateFacts(**{**base, **overrides})  # type: ignore[arg-type]


def by_gate(gates: Gates, found: GateFacts) -> dict[str, tuple[bool, str]]:
    return {r.gate: (r.passed, r.reason) for r in evaluate(gates, found)}


class TestRole:
    @pytest.mark.parametrize(
        ("role", "needed", "passed"),
        [(Role.viewer, "engineer", False), (Role.engineer, "engineer", True), (Role.engineer, "approver", False),
         (Role.approver, "approver", True), (Role.admin, "approver", True), (Role.approver, "admin", False)],
    )  # fmt: skip
    def test_rank(self, role: Role, needed: str, passed: bool) -> None:
        assert by_gate(Gates(required_role=needed), facts(actor_role=role))["role"][0] is passed

    def test_only_configured_gates_are_listed(self) -> None:
        assert list(by_gate(Gates(), facts())) == ["role"]


class TestBuilds:
    def test_newest_build_status_decides(self) -> None:
        gates = Gates(builds=["gpu", "cpu", "asic"])
        result = by_gate(gates, facts(builds={"gpu": "succeeded", "cpu": "failed"}))
        assert result["build:gpu"] == (True, "the gpu build succeeded")
        assert result["build:cpu"] == (False, "the newest cpu build is failed")
        assert result["build:asic"] == (False, "no asic build yet")


class TestMetrics:
    @pytest.mark.parametrize(
        ("op", "threshold", "passed"),
        [(">=", 0.91, True), (">", 0.91, False), ("<=", 0.91, True), ("<", 0.91, False), (">=", 0.95, False)],
    )
    def test_operators(self, op: str, threshold: float, passed: bool) -> None:
        gates = Gates(metrics=[MetricGate(name="auc", op=op, threshold=threshold)])
        assert by_gate(gates, facts())["metric:auc"][0] is passed

    def test_missing_metric_and_missing_run(self) -> None:
        gates = Gates(metrics=[MetricGate(name="f1", threshold=0.5)])
        assert "it has: auc" in by_gate(gates, facts())["metric:f1"][1]
        assert "no MLflow run" in by_gate(gates, facts(run_metrics=None))["metric:f1"][1]


class TestEvidence:
    def test_ab_uses_the_newest_verdict(self) -> None:
        gates = Gates(ab_evidence=True)
        newest_first = [EvidenceFact("ab_verdict", "lost", "x"), EvidenceFact("ab_verdict", "won", "x")]
        assert by_gate(gates, facts(evidence=newest_first))["ab_evidence"] == (
            False,
            "latest A/B verdict: lost",
        )
        assert by_gate(gates, facts(evidence=newest_first[1:]))["ab_evidence"][0] is True
        assert by_gate(gates, facts(evidence=[EvidenceFact("ab_verdict", "non_inferior", "x")]))[
            "ab_evidence"
        ][0]
        assert by_gate(gates, facts())["ab_evidence"][0] is False

    def test_drift_alert_blocks_until_a_newer_ok(self) -> None:
        gates = Gates(no_drift_alert=True)
        assert by_gate(gates, facts())["no_drift_alert"][0] is True
        alert = [EvidenceFact("drift", "alert", "monitor")]
        assert by_gate(gates, facts(evidence=alert))["no_drift_alert"][0] is False
        assert by_gate(gates, facts(evidence=[EvidenceFact("drift", "ok", "m"), *alert]))["no_drift_alert"][0]

    def test_second_approver_must_be_someone_else_for_this_alias(self) -> None:
        gates = Gates(second_approver=True)

        def approval(by: str, alias: str = "production") -> EvidenceFact:
            return EvidenceFact("approval", "approved", by, {"alias": alias})

        assert by_gate(gates, facts(evidence=[approval("ada")]))["second_approver"][0] is False
        assert by_gate(gates, facts(evidence=[approval("bob", "staging")]))["second_approver"][0] is False
        passed, reason = by_gate(gates, facts(evidence=[approval("bob"), approval("ada")]))["second_approver"]
        assert passed and reason == "approved by bob"


class TestLineage:
    def test_github_actions(self) -> None:
        env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "abc", "GITHUB_REPOSITORY": "org/repo", "GITHUB_RUN_ID": "42",
               "GITHUB_REF_NAME": "main", "GITHUB_SERVER_URL": "https://github.example"}  # fmt: skip
        assert ci_lineage(env) == {
            "ci_provider": "github-actions", "git_commit": "abc", "git_branch": "main", "repository": "org/repo",
            "ci_build_url": "https://github.example/org/repo/actions/runs/42",
        }  # fmt: skip

    def test_gitlab_and_jenkins_and_none(self) -> None:
        gitlab = ci_lineage({"GITLAB_CI": "true", "CI_COMMIT_SHA": "d1", "CI_JOB_URL": "https://gl/j/1"})
        assert gitlab == {"ci_provider": "gitlab-ci", "git_commit": "d1", "ci_build_url": "https://gl/j/1"}
        jenkins = ci_lineage({"JENKINS_URL": "https://j", "GIT_COMMIT": "e2", "BUILD_URL": "https://j/b/7"})
        assert jenkins["ci_provider"] == "jenkins" and jenkins["ci_build_url"] == "https://j/b/7"
        assert ci_lineage({"PATH": "/bin"}) == {}

    def test_tags_round_trip(self) -> None:
        lineage = {"git_commit": "abc", "training_data": "s3://d/2026-11"}
        assert lineage_from_tags({**lineage_tags(lineage), "other": "x"}) == lineage


class TestWebhookSignature:
    def test_valid_forged_stale_and_missing(self) -> None:
        body = b'{"data": {"name": "m"}}'
        signature = webhooks.sign("s3cret", "d1", "1000", body)
        assert (
            webhooks.verify(
                "s3cret", delivery_id="d1", timestamp="1000", body=body, signature=signature, now=1010
            )
            is None
        )
        forged = webhooks.verify(
            "other", delivery_id="d1", timestamp="1000", body=body, signature=signature, now=1010
        )
        assert forged is not None and "does not match" in forged
        tampered = webhooks.verify(
            "s3cret", delivery_id="d1", timestamp="1000", body=b"{}", signature=signature, now=1010
        )
        assert tampered is not None
        stale = webhooks.verify(
            "s3cret", delivery_id="d1", timestamp="1000", body=body, signature=signature, now=2000
        )
        assert stale is not None and "older than" in stale
        assert webhooks.verify(
            "s3cret", delivery_id="", timestamp="1000", body=body, signature=signature, now=1000
        )
        assert webhooks.verify(
            "s3cret", delivery_id="d", timestamp="x", body=body, signature=signature, now=1000
        )
