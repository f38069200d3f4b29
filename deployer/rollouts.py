"""The `deployer.rollout` job: apply a revision, then watch it until available or failed.

One job moves one revision: pending → applying → progressing → available (or failed with
the target's own reason: ProgressDeadlineExceeded, CrashLoopBackOff, an apply conflict...).
The deployment row is committed at every step, so the portal and the CLI show the rollout
live. The job watches for at most `SLICE_SECONDS`, then queues its own continuation, so a
slow rollout does not hold a worker thread for minutes.

A job that finds its deployment already `applying` is finishing the apply of a worker
that died part-way: it applies again (server-side apply is idempotent) and, when some
objects existed and others did not, says so on the deployment (`HalfApplied`), never
silently. A target that cannot be reached is retried by the job system with backoff; if
the job gives up, the reconcile job finishes the revision later.

On `available`, a deployment deployed with `switch` becomes its endpoint's active
deployment (the previous one stays warm at weight 0), once: a later re-watch after a
repair never moves traffic back.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from atoll.deployer import desired, endpoints, lifecycle, states
from atoll.deployer.lifecycle import SYSTEM, DeployerContext
from atoll.deployer.models import Deployment, Endpoint
from atoll.deployer.specs import DeploymentSpec
from atoll.deployer.targets.base import (
    ApplyConflict,
    ApplyResult,
    DeploymentTarget,
    RolloutStatus,
    TargetUnavailable,
)
from atoll.errors import AtollError, NotFound
from atoll.jobs import Handler, RetryLater
from atoll.registry.models import Build

SLICE_SECONDS = 30.0
POLL_SECONDS = 0.5
WATCH_MARGIN_SECONDS = 120.0


def watch_limit(deployment: Deployment, ctx: DeployerContext) -> float:
    """How long a rollout may take before Atoll calls it failed (the target usually says first)."""
    if deployment.target == "local":
        return ctx.settings.local_ready_timeout_seconds + WATCH_MARGIN_SECONDS
    return DeploymentSpec.model_validate(deployment.spec).progress_deadline_seconds + WATCH_MARGIN_SECONDS


def describe(result: ApplyResult) -> str:
    return ", ".join(f"{o.kind}/{o.name} {o.action}" for o in result.objects) or "nothing"


def apply_revision(
    session: Session, ctx: DeployerContext, deployment: Deployment, target: DeploymentTarget
) -> dict[str, Any] | None:
    """pending/applying → progressing; a result dict when the rollout ended here (failed)."""
    resumed = deployment.state == states.APPLYING
    if not resumed:
        lifecycle.move(
            session, deployment, states.APPLYING, message=f"applying revision {deployment.revision}"
        )
        session.commit()
    build = session.get(Build, deployment.build_id)
    assert build is not None
    try:
        result = target.apply(desired.objects(deployment, build, ctx.catalog))
    except TargetUnavailable as exc:
        deployment.reason, deployment.message = "TargetUnavailable", exc.detail
        session.commit()
        raise RetryLater(exc.detail) from None
    except AtollError as exc:
        reason = "ApplyConflict" if isinstance(exc, ApplyConflict) else "ApplyRefused"
        lifecycle.move(session, deployment, states.FAILED, reason=reason, message=exc.detail)
        session.commit()
        return {"deployment": deployment.name, "state": deployment.state, "reason": reason}
    created = [o for o in result.objects if o.action == "created"]
    if resumed and created and len(created) < len(result.objects):
        existed = ", ".join(f"{o.kind}/{o.name}" for o in result.objects if o.action != "created")
        missing = ", ".join(f"{o.kind}/{o.name}" for o in created)
        lifecycle.record(
            session,
            deployment,
            "HalfApplied",
            f"revision {deployment.revision} was left half-applied (a worker stopped part-way): {existed} "
            f"existed, {missing} did not; applied them now",
            warning=True,
            actor=SYSTEM,
        )
    lifecycle.move(session, deployment, states.PROGRESSING, message=f"applied: {describe(result)}")
    session.commit()
    return None


def _switch_endpoint(session: Session, deployment: Deployment) -> str | None:
    """Make the deployment its endpoint's active one, if it was deployed to be (once)."""
    if not deployment.switch_on_ready or deployment.endpoint_id is None:
        return None
    deployment.switch_on_ready = False
    endpoint = session.get(Endpoint, deployment.endpoint_id)
    assert endpoint is not None
    if endpoint.traffic_owner is not None:
        lifecycle.record(
            session,
            deployment,
            "NotSwitched",
            f"endpoint {endpoint.name}'s traffic is controlled by {endpoint.traffic_owner}: "
            "it takes traffic when that owner gives it some",
            actor=SYSTEM,
        )
        return endpoint.name
    change = endpoints.switch(
        session,
        actor=None,
        name=endpoint.name,
        to=deployment.name,
        reason=f"rollout of {deployment.name} revision {deployment.revision} is available "
        f"(deployed by {deployment.created_by})",
        job_id=deployment.rollout_job_id,
    )
    if change is not None:
        lifecycle.record(
            session,
            deployment,
            "Switched",
            f"endpoint {endpoint.name} now sends it all traffic",
            actor=SYSTEM,
        )
    return endpoint.name


def settle(session: Session, deployment: Deployment, status: RolloutStatus) -> bool:
    """Record what the target reports; True when the rollout reached an end (available or failed)."""
    if status.phase == "available":
        deployment.address = status.address or desired.service_address(deployment)
        ready = f"{status.ready_replicas}/{status.desired_replicas} ready"
        lifecycle.move(session, deployment, states.AVAILABLE, message=ready)
        return True
    if status.phase == "failed":
        lifecycle.move(session, deployment, states.FAILED, reason=status.reason, message=status.message)
        return True
    if (status.reason, status.message) != (deployment.reason, deployment.message):
        if status.reason and status.reason != deployment.reason:
            lifecycle.record(
                session,
                deployment,
                status.reason,
                status.message or status.reason,
                warning=True,
                actor=SYSTEM,
            )
        lifecycle.move(session, deployment, states.PROGRESSING, reason=status.reason, message=status.message)
    return False


def _read_status(session: Session, deployment: Deployment, target: DeploymentTarget) -> RolloutStatus | None:
    try:
        return target.status(deployment.name)
    except (TargetUnavailable, NotFound) as exc:
        why = "TargetUnavailable" if isinstance(exc, TargetUnavailable) else "NotFound"
        deployment.reason, deployment.message = why, exc.detail
        return None


def run_rollout(
    session: Session,
    ctx: DeployerContext,
    payload: dict[str, Any],
    *,
    slice_seconds: float = SLICE_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    deployment = session.get(Deployment, int(payload["deployment_id"]))
    revision = int(payload["revision"])
    if deployment is None:
        return {"skipped": "the deployment no longer exists"}
    name = deployment.name
    if deployment.revision != revision:
        return {"deployment": name, "skipped": f"superseded by revision {deployment.revision}"}
    if deployment.state in (states.UNDEPLOYING, states.UNDEPLOYED):
        return {"deployment": name, "skipped": f"the deployment is {deployment.state}"}
    started = float(payload.get("started") or time.time())
    target = ctx.targets.get(deployment.target)
    if deployment.state in (states.PENDING, states.APPLYING):
        ended = apply_revision(session, ctx, deployment, target)
        if ended is not None:
            return ended
    give_up = started + watch_limit(deployment, ctx)
    slice_end = time.monotonic() + slice_seconds
    while True:
        session.refresh(deployment)
        if deployment.revision != revision or deployment.state not in states.ROLLING_STATES:
            session.commit()
            return {
                "deployment": name,
                "revision": revision,
                "state": deployment.state,
                "stopped": "moved on",
            }
        status = _read_status(session, deployment, target)
        if status is not None and settle(session, deployment, status):
            switched = _switch_endpoint(session, deployment) if deployment.state == states.AVAILABLE else None
            session.commit()
            return {
                "deployment": name,
                "revision": revision,
                "state": deployment.state,
                "reason": deployment.reason,
                "switched": switched,
            }
        if time.time() > give_up:
            limit = watch_limit(deployment, ctx)
            lifecycle.move(
                session,
                deployment,
                states.FAILED,
                reason="RolloutTimeout",
                message=f"not available after {limit:.0f} s; last: {deployment.message or 'no status'}",
            )
            session.commit()
            return {
                "deployment": name,
                "revision": revision,
                "state": deployment.state,
                "reason": "RolloutTimeout",
            }
        if time.monotonic() > slice_end:
            job = lifecycle.enqueue_rollout(session, deployment, started=started)
            session.commit()
            return {
                "deployment": name,
                "revision": revision,
                "state": deployment.state,
                "continued_by": job.id,
            }
        session.commit()  # ends the transaction: never hold SQLite's write lock while waiting
        time.sleep(poll_seconds)


def handler(ctx: DeployerContext) -> Handler:
    def run(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return run_rollout(session, ctx, payload)

    return run
