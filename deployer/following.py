"""Alias-following: when an alias moves, the deployments that follow it roll to the new version.

The registry enqueues `registry.alias_moved` (model, alias, from, to) in the transaction
that moves the alias (promotion, `set`, or rollback, from the CLI, the portal or CI); it
never imports the deployer. This handler, registered by the worker, takes each live
deployment following `model@alias` to the new version's newest succeeded build for the
same backend, as the endpoint's policy says (`settings.on_alias_move`):

- `"switch"` (the default: what a promotion means without more configuration) — a new
  revision of the same deployment through the service's update path; the endpoint keeps
  its routes, the rollout job replaces what runs;
- `"canary"` — a new deployment of the new version (default name MODEL-vVERSION-BACKEND)
  behind the same endpoint at weight 0, then, once it is available, a canary from the
  deployment that follows today to it (`settings.canary`: the `CanaryStart` fields, e.g.
  `{"steps": [10, 50, 100], "hold_seconds": 120}`). The new deployment follows the alias
  from then on; the old one stays warm, pinned, as the canary's stable side.

A version with no succeeded build for that backend, or an endpoint whose traffic a canary
or an experiment controls, leaves everything as it is and says why in a Warning event on
the deployment.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.db import utcnow
from atoll.deployer import canary, desired, lifecycle, service, states
from atoll.deployer.lifecycle import SYSTEM, DeployerContext
from atoll.deployer.models import Deployment, DeploymentFollow, Endpoint, EndpointRoute
from atoll.deployer.schemas import DeployRequest
from atoll.deployer.traffic_schemas import CanaryStart
from atoll.errors import AtollError
from atoll.jobs import Handler, enqueue
from atoll.registry.builds.service import SUCCEEDED
from atoll.registry.models import Build
from atoll.registry.promotion import ALIAS_MOVED_JOB

FOLLOW_CANARY_JOB = "deployer.follow_canary"
POLICIES = ("switch", "canary")
DEFAULT_POLICY = "switch"
WAIT_SECONDS = 2.0

__all__ = ["ALIAS_MOVED_JOB", "FOLLOW_CANARY_JOB", "canary_handler", "handler", "on_alias_moved"]


def policy_of(endpoint: Endpoint | None) -> str:
    value = (endpoint.settings or {}).get("on_alias_move") if endpoint is not None else None
    return value if value in POLICIES else DEFAULT_POLICY


def _newest_build(session: Session, model: str, version: int, backend: str) -> Build | None:
    return session.scalar(
        select(Build)
        .where(
            Build.model_name == model,
            Build.version == version,
            Build.backend == backend,
            Build.status == SUCCEEDED,
        )
        .order_by(Build.id.desc())
        .limit(1)
    )


def _not_followed(session: Session, deployment: Deployment, message: str) -> dict[str, Any]:
    lifecycle.record(session, deployment, "AliasNotFollowed", message, warning=True, actor=SYSTEM)
    return {"deployment": deployment.name, "followed": False, "why": message}


def _follow_one(
    session: Session, ctx: DeployerContext, deployment: Deployment, payload: dict[str, Any]
) -> dict[str, Any]:
    model, alias, to = payload["model"], payload["alias"], int(payload["to"])
    moved = f"{model}@{alias} moved from v{payload.get('from')} to v{to} ({payload.get('kind', 'promote')})"
    if deployment.version == to:
        return {"deployment": deployment.name, "followed": True, "already": to}
    build = _newest_build(session, model, to, deployment.backend)
    if build is None:
        return _not_followed(
            session,
            deployment,
            f"{moved}, but v{to} has no succeeded {deployment.backend} build: {deployment.name} stays on "
            f"v{deployment.version}; build it (atoll builds {model} {to} --rebuild --backend "
            f"{deployment.backend}) and move the alias again",
        )
    endpoint = session.get(Endpoint, deployment.endpoint_id) if deployment.endpoint_id else None
    if endpoint is not None and endpoint.traffic_owner is not None:
        return _not_followed(
            session,
            deployment,
            f"{moved}, but endpoint {endpoint.name}'s traffic is controlled by {endpoint.traffic_owner}: "
            f"{deployment.name} stays on v{deployment.version}",
        )
    route = session.get(EndpointRoute, (endpoint.id, deployment.id)) if endpoint is not None else None
    policy = policy_of(endpoint)
    common = {
        "model": model,
        "version": to,
        "backend": deployment.backend,
        "endpoint": endpoint.name if endpoint else None,
        "target": deployment.target,
        "replicas": deployment.replicas,
        "build_id": build.id,
        "follow": alias,
        "reason": moved,
    }
    if policy == "switch" or endpoint is None or route is None or route.weight == 0:
        service.deploy(
            session,
            ctx,
            actor=None,
            request=DeployRequest.model_validate({**common, "name": deployment.name, "switch": False}),
        )
        return {"deployment": deployment.name, "followed": True, "policy": "switch", "version": to}
    candidate = desired.default_name(model, to, deployment.backend)
    created = service.deploy(
        session,
        ctx,
        actor=None,
        request=DeployRequest.model_validate({**common, "name": candidate, "switch": False}),
    )
    follow = session.get(DeploymentFollow, deployment.id)
    if follow is not None:
        session.delete(follow)  # the candidate follows the alias now
    lifecycle.record(
        session,
        deployment,
        "AliasMoved",
        f"{moved}: canary to {created.name} once it is available",
        actor=SYSTEM,
    )
    enqueue(
        session,
        kind=FOLLOW_CANARY_JOB,
        payload={"endpoint": endpoint.name, "candidate": created.name, "revision": created.revision},
        max_attempts=3,
    )
    return {"deployment": deployment.name, "followed": True, "policy": "canary", "candidate": created.name}


def on_alias_moved(session: Session, ctx: DeployerContext, payload: dict[str, Any]) -> dict[str, Any]:
    rows = session.scalars(
        select(Deployment)
        .join(DeploymentFollow, DeploymentFollow.deployment_id == Deployment.id)
        .where(
            DeploymentFollow.model_name == payload["model"],
            DeploymentFollow.alias == payload["alias"],
            Deployment.state != states.UNDEPLOYED,
        )
        .order_by(Deployment.id)
    )
    results = []
    for deployment in list(rows):
        try:
            with session.begin_nested():  # one deployment's refusal leaves the others rolling
                results.append(_follow_one(session, ctx, deployment, payload))
        except AtollError as exc:
            results.append(_not_followed(session, deployment, f"not followed: {exc.detail}"))
    return {"model": payload["model"], "alias": payload["alias"], "to": payload["to"], "deployments": results}


def start_follow_canary(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """Once the new version's deployment is available, start the endpoint's canary to it."""
    candidate = session.scalar(select(Deployment).where(Deployment.name == payload["candidate"]))
    if candidate is None or candidate.revision != int(payload["revision"]):
        return {"skipped": "the candidate is gone or has a newer revision"}
    if candidate.state in states.ROLLING_STATES:
        enqueue(
            session,
            kind=FOLLOW_CANARY_JOB,
            payload=payload,
            max_attempts=3,
            run_after=utcnow() + timedelta(seconds=WAIT_SECONDS),
        )
        return {"candidate": candidate.name, "waiting": candidate.state}
    if candidate.state != states.AVAILABLE:
        lifecycle.record(
            session,
            candidate,
            "AliasNotFollowed",
            f"its rollout ended {candidate.state}: no canary on endpoint {payload['endpoint']}",
            warning=True,
            actor=SYSTEM,
        )
        return {"candidate": candidate.name, "state": candidate.state}
    endpoint = session.scalar(select(Endpoint).where(Endpoint.name == payload["endpoint"]))
    settings = dict((endpoint.settings or {}).get("canary") or {}) if endpoint is not None else {}
    try:
        with session.begin_nested():
            started = canary.start(
                session,
                actor=None,
                name=payload["endpoint"],
                body=CanaryStart.model_validate({**settings, "to": candidate.name}),
            )
    except (AtollError, ValueError) as exc:
        why = exc.detail if isinstance(exc, AtollError) else str(exc)
        lifecycle.record(
            session, candidate, "AliasNotFollowed", f"no canary started: {why}", warning=True, actor=SYSTEM
        )
        return {"candidate": candidate.name, "canary": None, "why": why}
    return {"candidate": candidate.name, "canary": started.id}


def handler(ctx: DeployerContext) -> Handler:
    def run(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return on_alias_moved(session, ctx, payload)

    return run


def canary_handler() -> Handler:
    def run(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return start_follow_canary(session, payload)

    return run
