"""Moving a deployment through its states, with an event row for each move, and its jobs.

Shared by the service (which starts revisions), the rollout job and the reconcile job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.backends import Catalog, cached_catalog
from atoll.db import utcnow
from atoll.deployer import states
from atoll.deployer.models import Deployment, DeploymentEvent
from atoll.deployer.targets.select import Targets
from atoll.errors import NotFound
from atoll.jobs import RUNNING, Job, enqueue
from atoll.settings import Settings

ROLLOUT_JOB = "deployer.rollout"
RECONCILE_JOB = "deployer.reconcile"
SYSTEM = "system"


@dataclass(frozen=True)
class DeployerContext:
    """What the deployer needs from the platform: passed in, never global."""

    settings: Settings
    catalog: Catalog
    targets: Targets

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog | None = None) -> DeployerContext:
        return cls(settings, catalog or cached_catalog(settings.backends_file), Targets(settings))


def get(session: Session, name: str) -> Deployment:
    found = session.scalar(select(Deployment).where(Deployment.name == name))
    if found is None:
        raise NotFound(f"no deployment named {name!r} (list them with `atoll deployments`)")
    return found


def record(
    session: Session, deployment: Deployment, reason: str, message: str, *, warning: bool = False, actor: str
) -> DeploymentEvent:
    event = DeploymentEvent(
        deployment_id=deployment.id,
        type="Warning" if warning else "Normal",
        reason=reason,
        message=message[:4000],
        revision=deployment.revision,
        actor=actor,
    )
    session.add(event)
    return event


def move(
    session: Session,
    deployment: Deployment,
    state: states.State,
    *,
    actor: str = SYSTEM,
    reason: str | None = None,
    message: str | None = None,
    event: str | None = None,
) -> None:
    """Change state (checked against the lifecycle) and record why."""
    states.check_move(deployment.name, deployment.state, state)
    changed = state != deployment.state
    deployment.state = state
    deployment.reason, deployment.message = reason, message
    deployment.updated_at = utcnow()
    if state == states.AVAILABLE and changed:
        deployment.available_at = deployment.updated_at
    if changed or event:
        text = message or f"now {state}"
        record(
            session,
            deployment,
            event or state.capitalize(),
            text,
            warning=state == states.FAILED,
            actor=actor,
        )


def enqueue_rollout(session: Session, deployment: Deployment, *, started: float | None = None) -> Job:
    """Queue the job that applies the current revision and watches it until available or failed."""
    payload: dict[str, object] = {"deployment_id": deployment.id, "revision": deployment.revision}
    if started is not None:
        payload["started"] = started
    job = enqueue(
        session,
        kind=ROLLOUT_JOB,
        payload=payload,
        max_attempts=5,
        dedupe_key=f"{ROLLOUT_JOB}:{deployment.id}:{deployment.revision}:{uuid.uuid4().hex[:12]}",
    )
    deployment.rollout_job_id = job.id
    return job


def rollout_active(session: Session, deployment: Deployment) -> bool:
    """Whether a rollout job for the deployment is queued, or running under a live lease."""
    if deployment.rollout_job_id is None:
        return False
    job = session.get(Job, deployment.rollout_job_id)
    if job is None:
        return False
    if job.status == "queued":
        return True
    return job.status == RUNNING and job.lease_until is not None and job.lease_until > utcnow()
