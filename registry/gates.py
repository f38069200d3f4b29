"""Promotion gates: every gate is evaluated and explained. Pure: facts in, results out."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

from atoll.auth.policy import Role
from atoll.registry.schemas import GateResult, Gates

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
AB_PASSING = frozenset({"won", "non_inferior"})


@dataclass(frozen=True)
class EvidenceFact:
    kind: str
    status: str
    recorded_by: str
    summary: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class GateFacts:
    actor: str
    actor_role: Role
    alias: str
    builds: dict[str, str]  # backend -> status of its newest build
    run_metrics: dict[str, float] | None  # None: the version has no MLflow run
    evidence: list[EvidenceFact]  # newest first


def _role(gates: Gates, facts: GateFacts) -> GateResult:
    needed = Role(gates.required_role or Role.engineer)
    passed = facts.actor_role.rank >= needed.rank
    reason = f"{facts.actor} is {facts.actor_role}; {needed} or above required"
    return GateResult(gate="role", passed=passed, reason=reason)


def _build(backend: str, facts: GateFacts) -> GateResult:
    status = facts.builds.get(backend)
    if status == "succeeded":
        return GateResult(gate=f"build:{backend}", passed=True, reason=f"the {backend} build succeeded")
    reason = f"no {backend} build yet" if status is None else f"the newest {backend} build is {status}"
    return GateResult(gate=f"build:{backend}", passed=False, reason=reason)


def _metric(name: str, op: str, threshold: float, facts: GateFacts) -> GateResult:
    gate = f"metric:{name}"
    if facts.run_metrics is None:
        return GateResult(
            gate=gate, passed=False, reason="the version has no MLflow run to read metrics from"
        )
    if name not in facts.run_metrics:
        known = ", ".join(sorted(facts.run_metrics)) or "none"
        return GateResult(gate=gate, passed=False, reason=f"the run has no metric {name!r} (it has: {known})")
    value = facts.run_metrics[name]
    passed = _OPS[op](value, threshold)
    return GateResult(gate=gate, passed=passed, reason=f"{name} = {value:g}, required {op} {threshold:g}")


def _latest(facts: GateFacts, kind: str) -> EvidenceFact | None:
    return next((e for e in facts.evidence if e.kind == kind), None)


def _ab(facts: GateFacts) -> GateResult:
    verdict = _latest(facts, "ab_verdict")
    if verdict is None:
        return GateResult(
            gate="ab_evidence", passed=False, reason="no concluded A/B experiment for this version"
        )
    passed = verdict.status in AB_PASSING
    return GateResult(gate="ab_evidence", passed=passed, reason=f"latest A/B verdict: {verdict.status}")


def _drift(facts: GateFacts) -> GateResult:
    drift = _latest(facts, "drift")
    if drift is None:
        return GateResult(gate="no_drift_alert", passed=True, reason="no drift recorded for this version")
    passed = drift.status != "alert"
    return GateResult(gate="no_drift_alert", passed=passed, reason=f"latest drift status: {drift.status}")


def _second_approver(facts: GateFacts) -> GateResult:
    approvers = sorted(
        {
            e.recorded_by
            for e in facts.evidence
            if e.kind == "approval" and e.status == "approved" and e.summary.get("alias") == facts.alias
        }
        - {facts.actor}
    )
    if approvers:
        return GateResult(gate="second_approver", passed=True, reason=f"approved by {', '.join(approvers)}")
    return GateResult(
        gate="second_approver",
        passed=False,
        reason=f"needs an approval for @{facts.alias} by an approver other than {facts.actor}",
    )


def evaluate(gates: Gates, facts: GateFacts) -> list[GateResult]:
    """Every configured gate, in a stable order, each with the reason it passed or failed."""
    results = [_role(gates, facts)]
    results += [_build(backend, facts) for backend in gates.builds]
    results += [_metric(m.name, m.op, m.threshold, facts) for m in gates.metrics]
    if gates.ab_evidence:
        results.append(_ab(facts))
    if gates.no_drift_alert:
        results.append(_drift(facts))
    if gates.second_approver:
        results.append(_second_approver(facts))
    return results
