"""The deployment service: deploy, preview, rollback, undeploy, and reading what runs.

Plain functions taking the session explicitly; the caller's transaction holds every row
they write (deployment, revision, events, routes, history, audit). Every refusal comes
before any target call and any write: an invalid name is a 422, a build that did not
succeed a 409 naming it, an unreachable target a 503 with its reason. The rollout itself
runs in a durable job (`rollouts.py`), so the caller gets an answer at once and a worker
crash does not lose it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import desired, endpoints, follows, lifecycle, states
from atoll.deployer.lifecycle import DeployerContext
from atoll.deployer.models import Deployment, DeploymentEvent, DeploymentRevision, Endpoint, EndpointRoute
from atoll.deployer.schemas import (
    DeploymentRead,
    DeploymentStatusRead,
    DeployRequest,
    EventRead,
    EventsRead,
    LogsRead,
    PreviewRead,
    RevisionRead,
    TargetHealthRead,
)
from atoll.deployer.specs import require_deployment_name
from atoll.deployer.targets.base import DeploymentTarget, TargetUnavailable
from atoll.errors import AtollError, Conflict, InvalidInput, NotFound
from atoll.registry.builds.service import SUCCEEDED
from atoll.registry.models import Build

LOCAL_REPLICAS = 1


def _reachable(target: DeploymentTarget, kind: str) -> None:
    health = target.check()
    if not health.reachable:
        raise TargetUnavailable(f"the {kind} target is unreachable: {health.reason}", target=kind)


def _build(session: Session, request: DeployRequest) -> Build:
    """The build to deploy: the one named, else the backend's newest; it must have succeeded."""
    assert request.version is not None  # follows.resolve() ran
    what = f"{request.model} v{request.version} ({request.backend})"
    if request.build_id is not None:
        build = session.get(Build, request.build_id)
        if build is None:
            raise NotFound(f"build {request.build_id} does not exist", field="build_id")
        if (build.model_name, build.version, build.backend) != (
            request.model,
            request.version,
            request.backend,
        ):
            raise InvalidInput(
                f"build {build.id} is {build.model_name} v{build.version} ({build.backend}), not {what}",
                field="build_id",
            )
    else:
        build = session.scalar(
            select(Build)
            .where(
                Build.model_name == request.model,
                Build.version == request.version,
                Build.backend == request.backend,
            )
            .order_by(Build.id.desc())
            .limit(1)
        )
        if build is None:
            raise NotFound(
                f"{what} has no build; queue one with `atoll builds {request.model} {request.version} "
                f"--rebuild --backend {request.backend}`",
                field="backend",
            )
    if build.status != SUCCEEDED:
        why = f": {build.error.splitlines()[0][:300]}" if build.error else ""
        raise Conflict(
            f"build {build.id} of {what} is {build.status}, not succeeded: only a succeeded build can be "
            f"deployed{why}",
            field="build_id",
            build_id=build.id,
            build_status=build.status,
        )
    return build


def _spec(ctx: DeployerContext, request: DeployRequest, name: str, kind: str, build: Build) -> dict[str, Any]:
    if kind == "local":
        if request.replicas != LOCAL_REPLICAS or (request.max_replicas or 1) != LOCAL_REPLICAS:
            raise InvalidInput(
                "replicas: the local target runs one model server per deployment; use 1 replica, or "
                "--target kubernetes",
                field="replicas",
            )
        return desired.local_spec(name, build, request.endpoint, fault_rate=request.fault_rate)
    return desired.kubernetes_spec(
        name,
        build,
        endpoint=request.endpoint,
        replicas=request.replicas,
        max_replicas=request.max_replicas,
        namespace=ctx.targets.namespace(),
        settings=ctx.settings,
        fault_rate=request.fault_rate,
    )


def _plan(
    session: Session, ctx: DeployerContext, request: DeployRequest
) -> tuple[str, str, Build, dict[str, Any]]:
    """Everything checked before any write: (name, target kind, build, spec)."""
    assert request.version is not None  # follows.resolve() ran
    name = require_deployment_name(
        request.name or desired.default_name(request.model, request.version, request.backend)
    )
    if request.endpoint is not None:
        endpoints.check_endpoint_name(request.endpoint)
    kind = ctx.targets.kind(request.target)
    if request.backend not in ctx.catalog.backends:
        known = ", ".join(ctx.catalog.names())
        raise InvalidInput(
            f"backend: {request.backend!r} is not in the catalog (known: {known})", field="backend"
        )
    existing = session.scalar(select(Deployment).where(Deployment.name == name))
    if existing is not None and existing.state != states.UNDEPLOYED:
        if existing.target != kind:
            raise Conflict(
                f"deployment {name!r} runs on the {existing.target} target; deploy under another name to use "
                f"{kind}",
                field="target",
            )
        endpoint = session.get(Endpoint, existing.endpoint_id) if existing.endpoint_id else None
        if request.endpoint is not None and (endpoint is None or endpoint.name != request.endpoint):
            held = f"endpoint {endpoint.name!r}" if endpoint else "no endpoint"
            raise Conflict(f"deployment {name!r} serves {held}; an update cannot move it", field="endpoint")
        if existing.model_name != request.model:
            raise Conflict(
                f"deployment {name!r} serves model {existing.model_name!r}, not {request.model!r}",
                field="name",
            )
    build = _build(session, request)
    return name, kind, build, _spec(ctx, request, name, kind, build)


def _objects(
    ctx: DeployerContext, kind: str, name: str, build: Build, spec: dict[str, Any]
) -> list[dict[str, Any]]:
    probe = Deployment(name=name, target=kind, spec=spec)
    return desired.objects(probe, build, ctx.catalog)


def preview(session: Session, ctx: DeployerContext, request: DeployRequest) -> PreviewRead:
    """The target's own dry run against what is live; nothing is written anywhere."""
    request = follows.resolve(session, request)
    name, kind, build, spec = _plan(session, ctx, request)
    target = ctx.targets.get(kind)
    _reachable(target, kind)
    existing = session.scalar(select(Deployment).where(Deployment.name == name))
    diffs = target.preview(_objects(ctx, kind, name, build, spec))
    revision = existing.revision + 1 if existing is not None else 1
    return PreviewRead(deployment=name, target=kind, revision=revision, build_id=build.id, objects=diffs)


def deploy(
    session: Session, ctx: DeployerContext, *, actor: Principal | None, request: DeployRequest
) -> Deployment:
    """Record the desired deployment (a new one, or a new revision of one) and queue its rollout."""
    request = follows.resolve(session, request)
    name, kind, build, spec = _plan(session, ctx, request)
    target = ctx.targets.get(kind)
    _reachable(target, kind)
    who = endpoints.actor_name(actor)
    deployment = session.scalar(select(Deployment).where(Deployment.name == name))
    if deployment is not None and deployment.state != states.UNDEPLOYED:
        if (
            deployment.build_id == build.id
            and deployment.spec == spec
            and deployment.replicas == request.replicas
        ):
            follows.record(session, deployment, request, actor=who)
            return deployment  # the same desired state: nothing to roll out
        cause, action = "update", "deployment.update"
    elif deployment is not None:
        cause, action = "deploy", "deployment.redeploy"
    else:
        cause, action = "deploy", "deployment.create"
    if deployment is None:
        deployment = Deployment(name=name, target=kind, state=states.PENDING, revision=0, created_by=who)
        session.add(deployment)
    elif deployment.state == states.UNDEPLOYED:
        lifecycle.move(session, deployment, states.PENDING, actor=who, message="deployed again")
        deployment.undeployed_at = None
    else:
        lifecycle.move(session, deployment, states.PENDING, actor=who, message="a new revision")
    deployment.model_name, deployment.version, deployment.backend = (
        request.model,
        build.version,
        request.backend,
    )
    deployment.build_id, deployment.spec, deployment.replicas = build.id, spec, request.replicas
    deployment.switch_on_ready = request.switch
    deployment.revision += 1
    deployment.updated_at = utcnow()
    session.flush()
    follows.record(session, deployment, request, actor=who)
    session.add(
        DeploymentRevision(
            deployment_id=deployment.id,
            revision=deployment.revision,
            build_id=build.id,
            version=build.version,
            replicas=request.replicas,
            spec=spec,
            cause=cause,
            created_by=who,
        )
    )
    lifecycle.record(
        session,
        deployment,
        "Created" if cause == "deploy" else "Updated",
        f"revision {deployment.revision}: {build.model_name} v{build.version}, build {build.id} "
        f"({build.backend}) on {kind}" + (f": {request.reason}" if request.reason else ""),
        actor=who,
    )
    if request.endpoint is not None:
        endpoint = endpoints.ensure(session, actor=actor, name=request.endpoint, reason=f"deploy {name}")
        endpoints.attach(
            session, endpoint=endpoint, deployment=deployment, actor=actor, reason=f"deploy {name}"
        )
    job = lifecycle.enqueue_rollout(session, deployment)
    audit.record(
        session,
        actor=actor,
        action=action,
        target_type="deployment",
        target_id=name,
        summary={
            "model": build.model_name,
            "version": build.version,
            "backend": build.backend,
            "build_id": build.id,
            "target": kind,
            "replicas": request.replicas,
            "endpoint": request.endpoint,
            "revision": deployment.revision,
            "job_id": job.id,
            "reason": request.reason,
            "follow": request.follow,
        },
    )
    session.flush()
    return deployment


def rollback(
    session: Session, ctx: DeployerContext, *, actor: Principal | None, name: str, reason: str
) -> Deployment:
    """Back to the revision before the current one, as a new revision (history is kept whole)."""
    deployment = lifecycle.get(session, name)
    if deployment.state in (states.UNDEPLOYING, states.UNDEPLOYED):
        raise Conflict(f"deployment {name!r} is {deployment.state}; deploy it again instead")
    history = list(
        session.scalars(
            select(DeploymentRevision)
            .where(DeploymentRevision.deployment_id == deployment.id)
            .order_by(DeploymentRevision.revision.desc())
        )
    )
    previous = next(
        (
            r
            for r in history
            if r.revision < deployment.revision
            and (r.build_id, r.spec) != (deployment.build_id, deployment.spec)
        ),
        None,
    )
    if previous is None:
        raise Conflict(f"deployment {name!r} has no earlier revision to roll back to (it has {len(history)})")
    build = session.get(Build, previous.build_id)
    assert build is not None
    target = ctx.targets.get(deployment.target)
    _reachable(target, deployment.target)
    who = endpoints.actor_name(actor)
    from_revision = deployment.revision
    lifecycle.move(
        session, deployment, states.PENDING, actor=who, message=f"rollback to revision {previous.revision}"
    )
    deployment.build_id, deployment.version, deployment.spec = (
        previous.build_id,
        previous.version,
        previous.spec,
    )
    deployment.replicas = previous.replicas
    deployment.revision = history[0].revision + 1
    session.add(
        DeploymentRevision(
            deployment_id=deployment.id,
            revision=deployment.revision,
            build_id=previous.build_id,
            version=previous.version,
            replicas=previous.replicas,
            spec=previous.spec,
            cause="rollback",
            created_by=who,
        )
    )
    lifecycle.record(
        session,
        deployment,
        "RolledBack",
        f"revision {deployment.revision} = revision {previous.revision} (v{previous.version}, build "
        f"{previous.build_id}), was revision {from_revision}" + (f": {reason}" if reason else ""),
        actor=who,
    )
    job = lifecycle.enqueue_rollout(session, deployment)
    audit.record(
        session,
        actor=actor,
        action="deployment.rollback",
        target_type="deployment",
        target_id=name,
        summary={
            "from_revision": from_revision,
            "to_revision": previous.revision,
            "revision": deployment.revision,
            "version": previous.version,
            "build_id": previous.build_id,
            "job_id": job.id,
            "reason": reason,
        },
    )
    session.flush()
    return deployment


def undeploy(
    session: Session, ctx: DeployerContext, *, actor: Principal | None, name: str, force: bool, reason: str
) -> list[str]:
    """Delete everything the target applied for it (and nothing else); its route goes too.

    A deployment serving traffic is refused unless `force`: switch the endpoint first. If
    the target fails part-way, the transaction rolls back and the deployment stays desired,
    so the next reconcile re-creates what was deleted: never a half-deleted deployment
    that nobody tracks.
    """
    deployment = lifecycle.get(session, name)
    if deployment.state == states.UNDEPLOYED:
        raise Conflict(f"deployment {name!r} is already undeployed")
    route = (
        session.get(EndpointRoute, (deployment.endpoint_id, deployment.id))
        if deployment.endpoint_id
        else None
    )
    if route is not None and route.weight > 0 and not force:
        endpoint = session.get(Endpoint, route.endpoint_id)
        assert endpoint is not None
        raise Conflict(
            f"deployment {name!r} serves {route.weight}% of endpoint {endpoint.name!r}: switch the endpoint "
            f"to another deployment first (atoll endpoints switch {endpoint.name} --to ...), or undeploy "
            "with force to leave the endpoint serving nothing",
            field="force",
        )
    target = ctx.targets.get(deployment.target)
    _reachable(target, deployment.target)
    who = endpoints.actor_name(actor)
    lifecycle.move(session, deployment, states.UNDEPLOYING, actor=who, message=reason or "undeploy requested")
    deleted = target.delete(name)
    endpoints.detach(session, deployment=deployment, actor=actor, reason=f"undeploy {name}")
    gone = [f"{d.kind}/{d.name}" for d in deleted]
    lifecycle.move(
        session,
        deployment,
        states.UNDEPLOYED,
        actor=who,
        message="deleted " + (", ".join(gone) if gone else "nothing (no object was left on the target)"),
    )
    deployment.undeployed_at, deployment.address = utcnow(), None
    audit.record(
        session,
        actor=actor,
        action="deployment.undeploy",
        target_type="deployment",
        target_id=name,
        summary={"deleted": gone, "force": force, "reason": reason, "revision": deployment.revision},
    )
    session.flush()
    return gone


# --- reading ---------------------------------------------------------------------------------


def read(session: Session, deployment: Deployment) -> DeploymentRead:
    endpoint = session.get(Endpoint, deployment.endpoint_id) if deployment.endpoint_id else None
    route = session.get(EndpointRoute, (deployment.endpoint_id, deployment.id)) if endpoint else None
    found = DeploymentRead.model_validate(deployment)
    return found.model_copy(
        update={
            "endpoint": endpoint.name if endpoint else None,
            "weight": route.weight if route else None,
            "follow": f"{deployment.model_name}@{alias}"
            if (alias := follows.followed_alias(session, deployment))
            else None,
        }
    )


def search(
    session: Session,
    *,
    state: str | None = None,
    endpoint: str | None = None,
    model: str | None = None,
    include_undeployed: bool = True,
    limit: int,
    offset: int,
) -> tuple[list[Deployment], int]:
    query = select(Deployment)
    if state:
        query = query.where(Deployment.state == state)
    elif not include_undeployed:
        query = query.where(Deployment.state != states.UNDEPLOYED)
    if endpoint:
        query = query.join(Endpoint, Endpoint.id == Deployment.endpoint_id).where(Endpoint.name == endpoint)
    if model:
        query = query.where(Deployment.model_name == model)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Deployment.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def live_status(session: Session, ctx: DeployerContext, name: str) -> DeploymentStatusRead:
    """The stored state, and what the target reports now (or why it could not be asked)."""
    deployment = lifecycle.get(session, name)
    rollout, error = None, None
    if deployment.state != states.UNDEPLOYED:
        try:
            rollout = ctx.targets.get(deployment.target).status(name)
        except NotFound as exc:
            error = exc.detail
        except AtollError as exc:
            error = f"{exc.title}: {exc.detail}"
    return DeploymentStatusRead(deployment=read(session, deployment), rollout=rollout, target_error=error)


def events(session: Session, ctx: DeployerContext, name: str, *, limit: int = 100) -> EventsRead:
    """Atoll's own events and the target's, newest first."""
    deployment = lifecycle.get(session, name)
    own = session.scalars(
        select(DeploymentEvent)
        .where(DeploymentEvent.deployment_id == deployment.id)
        .order_by(DeploymentEvent.id.desc())
        .limit(limit)
    )
    found = [
        EventRead(
            at=e.at,
            source="atoll",
            type=e.type,
            reason=e.reason,
            message=e.message,
            revision=e.revision,
            actor=e.actor,
        )
        for e in own
    ]
    status = live_status(session, ctx, name)
    if status.rollout is not None:
        found += [
            EventRead(
                at=_parse_time(e.last_seen),
                source="target",
                type=e.type,
                reason=e.reason,
                message=e.message,
                object=e.object,
                count=e.count,
            )
            for e in reversed(status.rollout.events)
        ]
    found.sort(key=lambda e: e.at or _EPOCH, reverse=True)
    return EventsRead(events=found[:limit], target_error=status.target_error)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def logs(session: Session, ctx: DeployerContext, name: str, *, tail: int) -> LogsRead:
    deployment = lifecycle.get(session, name)
    if deployment.state == states.UNDEPLOYED:
        raise Conflict(f"deployment {name!r} is undeployed: its logs went with it")
    return LogsRead(deployment=name, logs=ctx.targets.get(deployment.target).logs(name, tail))


def revisions(session: Session, name: str) -> list[RevisionRead]:
    deployment = lifecycle.get(session, name)
    rows = session.scalars(
        select(DeploymentRevision)
        .where(DeploymentRevision.deployment_id == deployment.id)
        .order_by(DeploymentRevision.revision.desc())
    )
    return [
        RevisionRead.model_validate(r).model_copy(update={"current": r.revision == deployment.revision})
        for r in rows
    ]


def target_health(ctx: DeployerContext) -> list[TargetHealthRead]:
    """Each target: reachable, or why not; which one deployments go to by default."""
    return [
        TargetHealthRead.model_validate(
            {
                "name": kind,
                "default": kind == ctx.targets.default,
                "reachable": h.reachable,
                "reason": h.reason,
            }
        )
        for kind, h in ctx.targets.health().items()
    ]
