"""The `deployer.reconcile` job: keep every live deployment's objects as the database says.

Periodic (`reconcile_interval_seconds`, default 30 s). For each live deployment that no
rollout job is applying right now, it applies the current revision's objects again, taking back fields
someone changed (`force_conflicts`): server-side apply writes nothing when nothing
drifted, re-creates a deleted Service, and scales a scaled-away Deployment back. What it
repaired is an event on the deployment (`DriftRepaired`) and an audit row, and the
deployment is watched again until available (by its rollout job, if one is watching). A
deployment left `applying` with no job to finish it (a worker died and its job gave up) is
applied and reported `HalfApplied`; one left `progressing` with no job gets a new watch.

When nothing needed repair it reads the target's status, so a local server that crashed
after being available, or one that recovered, shows as such.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.deployer import desired, lifecycle, states
from atoll.deployer.lifecycle import SYSTEM, DeployerContext
from atoll.deployer.models import Deployment
from atoll.deployer.rollouts import describe
from atoll.deployer.targets.base import DeploymentTarget, TargetHealth, TargetUnavailable
from atoll.errors import AtollError, NotFound
from atoll.jobs import Handler
from atoll.registry.models import Build


def _audit(session: Session, deployment: Deployment, repaired: list[str], why: str) -> None:
    audit.record(
        session,
        actor=None,
        action="deployment.reconcile",
        target_type="deployment",
        target_id=deployment.name,
        summary={"repaired": repaired, "why": why, "revision": deployment.revision},
    )


def _watch_again(session: Session, deployment: Deployment, message: str) -> None:
    lifecycle.move(session, deployment, states.PROGRESSING, message=message)
    lifecycle.enqueue_rollout(session, deployment)


def _refresh(session: Session, deployment: Deployment, target: DeploymentTarget) -> None:
    """Nothing drifted: bring the stored state in line with what the target reports."""
    try:
        status = target.status(deployment.name)
    except (TargetUnavailable, NotFound):
        return
    if status.phase == "available":
        address = status.address or desired.service_address(deployment)
        if address != deployment.address:
            deployment.address = address
        if deployment.state != states.AVAILABLE:
            lifecycle.move(session, deployment, states.AVAILABLE, message="available again")
    elif status.phase == "failed" and deployment.state != states.FAILED:
        lifecycle.move(session, deployment, states.FAILED, reason=status.reason, message=status.message)
    elif status.phase == "progressing" and deployment.state == states.AVAILABLE:
        why = status.message or status.reason or "the target reports it is not ready"
        lifecycle.record(session, deployment, status.reason or "NotReady", why, warning=True, actor=SYSTEM)
        _watch_again(session, deployment, why)


def reconcile_one(
    session: Session, ctx: DeployerContext, deployment: Deployment, *, watched: bool = False
) -> dict[str, Any]:
    """Re-apply one deployment's objects; `watched`: a rollout job is watching it already."""
    target = ctx.targets.get(deployment.target)
    build = session.get(Build, deployment.build_id)
    assert build is not None
    was = deployment.state
    try:
        result = target.apply(desired.objects(deployment, build, ctx.catalog), force_conflicts=True)
    except TargetUnavailable as exc:
        return {"unreachable": exc.detail}
    except AtollError as exc:
        if (deployment.reason, deployment.message) != ("ReconcileFailed", exc.detail):
            lifecycle.record(session, deployment, "ReconcileFailed", exc.detail, warning=True, actor=SYSTEM)
            deployment.reason, deployment.message = "ReconcileFailed", exc.detail
        return {"failed": exc.detail}
    repaired = [f"{o.kind}/{o.name} {o.action}" for o in result.objects if o.action != "unchanged"]
    if was == states.APPLYING:
        text = (
            f"revision {deployment.revision} was left half-applied with no rollout job to finish it "
            f"(a worker stopped part-way); applied: {describe(result)}"
        )
        lifecycle.record(session, deployment, "HalfApplied", text, warning=True, actor=SYSTEM)
        _audit(session, deployment, repaired, "half-applied")
        _watch_again(session, deployment, text)
        return {"half_applied": repaired}
    if repaired:
        text = f"re-applied what changed on the target outside Atoll: {', '.join(repaired)}"
        lifecycle.record(session, deployment, "DriftRepaired", text, warning=True, actor=SYSTEM)
        _audit(session, deployment, repaired, "drift")
        if not watched:
            _watch_again(session, deployment, text)
        return {"repaired": repaired}
    if was == states.PROGRESSING and not watched:  # its watch job gave up or was lost
        _watch_again(session, deployment, deployment.message or "watching the rollout again")
    elif not watched:
        _refresh(session, deployment, target)
    return {}


def reconcile(session: Session, ctx: DeployerContext) -> dict[str, Any]:
    wanted = states.LIVE_STATES | {states.PENDING}
    ids = list(
        session.scalars(select(Deployment.id).where(Deployment.state.in_(wanted)).order_by(Deployment.id))
    )
    session.commit()
    health: dict[str, TargetHealth] = {}
    report: dict[str, Any] = {
        "checked": 0,
        "repaired": {},
        "half_applied": {},
        "unreachable": {},
        "failed": {},
    }
    for deployment_id in ids:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None or deployment.state not in wanted:
            continue
        watched = lifecycle.rollout_active(session, deployment)
        if watched and deployment.state in (states.PENDING, states.APPLYING):
            continue  # its rollout job is applying it right now
        if deployment.state == states.PENDING:  # its rollout job gave up before starting
            lifecycle.record(
                session, deployment, "Requeued", "its rollout job was lost; queued again", actor=SYSTEM
            )
            lifecycle.enqueue_rollout(session, deployment)
            session.commit()
            continue
        kind = deployment.target
        if kind not in health:
            health[kind] = ctx.targets.get(kind).check()
        if not health[kind].reachable:
            report["unreachable"][deployment.name] = health[kind].reason
            continue
        report["checked"] += 1
        outcome = reconcile_one(session, ctx, deployment, watched=watched)
        for key, value in outcome.items():
            report[key][deployment.name] = value
        session.commit()
    return report


def handler(ctx: DeployerContext) -> Handler:
    def run(session: Session, _payload: dict[str, Any]) -> dict[str, Any]:
        return reconcile(session, ctx)

    return run
