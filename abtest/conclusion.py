"""Conclude an experiment: its verdict becomes evidence on each arm's model version, and
with ``promote`` the winner's alias moves through the promotion gates together with the
endpoint's traffic, in one audited step.

Evidence statuses (``ab_verdict``, read by the registry's ``ab_evidence`` gate):
a treatment the engine says to ship is ``won`` (superiority) or ``non_inferior``; one it
says not to ship ``lost``; otherwise ``inconclusive``. The control is ``lost`` when a
treatment won, ``won`` when every treatment lost, else ``inconclusive``. Two arms serving
one version (an A/A test) record it once, the better status first.

A sample ratio mismatch blocks the verdict (409): the assignment or the logging is broken
and no number can be trusted; stop the experiment instead. With ``promote``, a failing gate
is a 409 naming the gates, and nothing changes: the gates read the verdict the step would
record, and every row (evidence, traffic, state, audit) is written inside the alias move's
own transaction (``promotion.move_alias(with_move=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.abtest import lifecycle, results, service
from atoll.abtest.models import CONCLUDED, RUNNING, STOPPED, Experiment
from atoll.abtest.schemas import ResultsRead
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import endpoints
from atoll.deployer.models import Deployment
from atoll.errors import Conflict, Unavailable
from atoll.registry import evidence
from atoll.registry.gates import EvidenceFact
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.promotion import GatesFailed, move_alias
from atoll.registry.schemas import EvidenceIn

STATUS_RANK = {"won": 0, "non_inferior": 1, "inconclusive": 2, "lost": 3}
ENGINE_TO_STATUS = {"dont_ship": "lost", "keep_running": "inconclusive"}


@dataclass(frozen=True)
class ArmEvidence:
    arm: str
    model_name: str
    version: int
    status: str


def _deployment(session: Session, name: str) -> Deployment:
    found = session.scalar(select(Deployment).where(Deployment.name == name))
    if found is None:
        raise Conflict(f"arm {name!r}: its deployment no longer exists", field="arms")
    return found


def _status(experiment: Experiment, readout: ResultsRead, arm: str) -> str:
    assert readout.analysis is not None
    decisions = {d.arm: d.verdict for d in readout.analysis.decisions}
    if arm != service.control_arm(experiment):
        decision = decisions.get(arm, "keep_running")
        if decision == "ship":
            return "won" if experiment.hypothesis == "superiority" else "non_inferior"
        return ENGINE_TO_STATUS.get(decision, "inconclusive")
    if readout.verdict == "won":
        return "lost"
    return "won" if readout.verdict == "lost" else "inconclusive"


def arm_evidence(session: Session, experiment: Experiment, readout: ResultsRead) -> list[ArmEvidence]:
    """One status per model version behind the arms (the better one where two arms share it)."""
    found: dict[tuple[str, int], ArmEvidence] = {}
    for arm in experiment.arms:
        name = arm["deployment"]
        deployment = _deployment(session, name)
        item = ArmEvidence(
            name, deployment.model_name, deployment.version, _status(experiment, readout, name)
        )
        key = (item.model_name, item.version)
        if key not in found or STATUS_RANK[item.status] < STATUS_RANK[found[key].status]:
            found[key] = item
    return list(found.values())


def _summary(experiment: Experiment, readout: ResultsRead, item: ArmEvidence) -> dict[str, Any]:
    return {
        "experiment": experiment.key,
        "endpoint": experiment.endpoint,
        "arm": item.arm,
        "control": service.control_arm(experiment),
        "verdict": readout.verdict,
        "winner": readout.winner,
        "reasons": readout.reasons[:10],
    }


def _record(
    session: Session,
    *,
    actor: Principal,
    experiment: Experiment,
    readout: ResultsRead,
    items: list[ArmEvidence],
    traffic: tuple[dict[str, int], str] | None,
    promoted: dict[str, Any] | None,
    reason: str,
) -> None:
    """Every row of the conclusion, in the caller's transaction."""
    current = service.get(session, experiment.key, lock=True)
    if current.state not in (RUNNING, STOPPED):
        raise Conflict(
            f"experiment {current.key!r} is {current.state}; it was concluded meanwhile", field="state"
        )
    for item in items:
        evidence.record(
            session,
            actor=actor,
            name=item.model_name,
            version=item.version,
            body=EvidenceIn(
                kind="ab_verdict",
                status=item.status,
                summary=_summary(current, readout, item),
                source=f"experiment:{current.key}",
            ),
        )
    if traffic is not None:
        weights, why = traffic
        lifecycle.hand_back(
            session,
            actor=actor,
            experiment=current,
            to=weights,
            reason=f"experiment {current.key} concluded: {why}",
        )
    results.snapshot(session, current, readout)
    now = utcnow()
    if current.state == RUNNING:
        current.stopped_at, current.stopped_by = now, actor.username
    current.state = CONCLUDED
    current.concluded_at, current.concluded_by = now, actor.username
    current.verdict = {
        "verdict": readout.verdict,
        "winner": readout.winner,
        "reasons": readout.reasons,
        "evidence": [item.__dict__ for item in items],
        "promoted": promoted,
    }
    audit.record(
        session,
        actor=actor,
        action="experiment.conclude",
        target_type="experiment",
        target_id=current.key,
        summary={
            "verdict": readout.verdict,
            "winner": readout.winner,
            "promoted": promoted,
            "reason": reason,
        },
    )


def conclude(
    session: Session,
    registry: MlflowRegistry | None,
    *,
    actor: Principal,
    key: str,
    promote: bool = False,
    reason: str = "",
) -> Experiment:
    experiment = service.get(session, key)
    if experiment.state not in (RUNNING, STOPPED):
        raise Conflict(
            f"experiment {key!r} is {experiment.state}; only a running or stopped one can be concluded",
            field="state",
        )
    readout = results.compute(session, experiment)
    if readout.verdict == "invalid":
        raise Conflict(
            f"experiment {key!r} cannot be concluded: {'; '.join(readout.reasons)}. No verdict is "
            f"recorded while the split is broken; stop it (atoll ab stop {key}) and look at assignment "
            "and exposure logging",
            field="srm",
        )
    items = arm_evidence(session, experiment, readout)
    if not promote:
        traffic = lifecycle.restorable_weights(session, experiment) if experiment.state == RUNNING else None
        _record(
            session,
            actor=actor,
            experiment=experiment,
            readout=readout,
            items=items,
            traffic=traffic,
            promoted=None,
            reason=reason,
        )
        return experiment
    if readout.winner is None:
        raise Conflict(
            f"experiment {key!r} has no winner to promote (verdict: {readout.verdict}); conclude it without "
            "--promote to record the verdict",
            field="promote",
            verdict=readout.verdict,
        )
    if registry is None:
        raise Unavailable("promotion needs MLflow: set ATOLL_MLFLOW_TRACKING_URI, or run `atoll up`")
    return _promote(
        session, registry, actor=actor, experiment=experiment, readout=readout, items=items, reason=reason
    )


def _promote(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    experiment: Experiment,
    readout: ResultsRead,
    items: list[ArmEvidence],
    reason: str,
) -> Experiment:
    deployment = _deployment(session, readout.winner or "")
    name, version, alias = deployment.model_name, deployment.version, experiment.promote_alias
    status = "won" if experiment.hypothesis == "superiority" else "non_inferior"
    traffic = ({deployment.name: endpoints.TOTAL_WEIGHT}, f"all traffic to the winner {deployment.name}")
    promoted = {"model": name, "version": version, "alias": alias, "deployment": deployment.name}

    def write(inner: Session) -> None:
        _record(
            inner,
            actor=actor,
            experiment=experiment,
            readout=readout,
            items=items,
            traffic=traffic,
            promoted=promoted,
            reason=reason,
        )

    current = registry.get_model(name).aliases.get(alias)
    if current == str(version):  # the alias is there already: only the verdict and the traffic move
        write(session)
        return experiment
    pending = [
        EvidenceFact(
            kind="ab_verdict",
            status=status,
            recorded_by=actor.username,
            summary={"experiment": experiment.key},
        )
    ]
    session.commit()  # end the read transaction: the move takes its lock in a transaction of its own
    try:
        move_alias(
            session,
            registry,
            actor=actor,
            name=name,
            alias=alias,
            version=version,
            reason=reason or f"experiment {experiment.key}: {readout.verdict}",
            force=False,
            pending=pending,
            with_move=write,
        )
    except GatesFailed as exc:
        raise Conflict(
            f"experiment {experiment.key!r} not concluded, nothing changed: {exc.detail}",
            field="promote",
            **exc.extra,
        ) from None
    session.refresh(experiment)
    return experiment
