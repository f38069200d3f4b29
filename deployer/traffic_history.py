"""Which deployments, model versions and backends served an endpoint's traffic at a time T.

Two histories answer it together: the endpoint's changes (`EndpointChange`: the weights
each change set) give the split in force at T (the newest change at or before T), and each
deployment's revisions (`DeploymentRevision`: a rolling update or a rollback gives a
deployment another build, so another version) give the build in force at T (the newest
revision created at or before T; its rollout then took seconds to finish, during which the
previous revision still answered). The build names the model, version and backend.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.deployer.endpoints import get
from atoll.deployer.models import Deployment, DeploymentRevision, EndpointChange
from atoll.deployer.schemas import ServedAtRead, ServedRouteRead
from atoll.registry.models import Build


def served_at(session: Session, name: str, at: datetime) -> ServedAtRead:
    """The split in force at `at` (a naive time is read as UTC), deployment by deployment."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    endpoint = get(session, name)
    change = session.scalar(
        select(EndpointChange)
        .where(EndpointChange.endpoint_id == endpoint.id, EndpointChange.at <= at)
        .order_by(EndpointChange.at.desc(), EndpointChange.id.desc())
        .limit(1)
    )
    if change is None:
        return ServedAtRead(
            endpoint=name, at=at, change_at=None, change_kind=None, split_salt=None, routes=[]
        )
    ordered = sorted(change.to_weights.items(), key=lambda item: (-item[1], item[0]))
    return ServedAtRead(
        endpoint=name,
        at=at,
        change_at=change.at,
        change_kind=change.kind,
        split_salt=change.split_salt,
        routes=[_route_at(session, deployment, weight, at) for deployment, weight in ordered],
    )


def _route_at(session: Session, deployment_name: str, weight: int, at: datetime) -> ServedRouteRead:
    deployment = session.scalar(select(Deployment).where(Deployment.name == deployment_name))
    revision = None
    if deployment is not None:
        revisions = select(DeploymentRevision).where(DeploymentRevision.deployment_id == deployment.id)
        revision = session.scalar(
            revisions.where(DeploymentRevision.created_at <= at)
            .order_by(DeploymentRevision.revision.desc())
            .limit(1)
        )
        if revision is None:  # clocks a moment apart: the change names it, so its first revision
            revision = session.scalar(revisions.order_by(DeploymentRevision.revision).limit(1))
    build = session.get(Build, revision.build_id) if revision is not None else None
    if build is None:
        return ServedRouteRead(
            deployment=deployment_name,
            weight=weight,
            model_name=None,
            version=None,
            backend=None,
            build_id=None,
            revision=None,
        )
    return ServedRouteRead(
        deployment=deployment_name,
        weight=weight,
        model_name=build.model_name,
        version=build.version,
        backend=build.backend,
        build_id=build.id,
        revision=revision.revision if revision is not None else None,
    )
