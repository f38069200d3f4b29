"""Which alias a deployment follows: resolving `MODEL@ALIAS` at deploy time, and the record of it.

A deployment deployed with `follow` ("production", or "ranker@production") serves the
version the alias points to now (the registry's synced alias cache), and keeps a
`DeploymentFollow` row so that the alias-moved job (`following.py`) finds it when the alias
moves. Deploying it again with a pinned version (no `follow`) ends the following.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.deployer.models import Deployment, DeploymentFollow
from atoll.deployer.schemas import DeployRequest
from atoll.errors import InvalidInput, NotFound
from atoll.registry.models import CachedAlias, CachedModel


def split_follow(model: str, follow: str) -> str:
    """The alias of `follow` ("ALIAS" or "MODEL@ALIAS" naming the same model)."""
    named, at, alias = follow.rpartition("@")
    if at and named != model:
        raise InvalidInput(
            f"follow: {follow!r} names model {named!r}, but the deployment is of {model!r}", field="follow"
        )
    if not alias:
        raise InvalidInput("follow: give an alias, e.g. production or MODEL@production", field="follow")
    return alias


def alias_version(session: Session, model: str, alias: str) -> int:
    version = session.scalar(
        select(CachedAlias.version)
        .join(CachedModel, CachedModel.id == CachedAlias.model_id)
        .where(CachedModel.name == model, CachedAlias.alias == alias)
    )
    if version is None:
        raise NotFound(
            f"follow: {model}@{alias} does not exist (yet); promote a version to it first "
            f"(atoll promote {model} VERSION --to {alias})",
            field="follow",
        )
    return int(version)


def resolve(session: Session, request: DeployRequest) -> DeployRequest:
    """The request with its version: the one given, else the one the followed alias points to."""
    if request.follow is None:
        if request.version is None:
            raise InvalidInput(
                "version: give a version, or an alias to follow (MODEL@ALIAS)", field="version"
            )
        return request
    alias = split_follow(request.model, request.follow)
    version = request.version if request.version is not None else alias_version(session, request.model, alias)
    return request.model_copy(update={"version": version, "follow": alias})


def record(session: Session, deployment: Deployment, request: DeployRequest, *, actor: str) -> None:
    """Remember (or forget) which alias the deployment follows."""
    current = session.get(DeploymentFollow, deployment.id)
    if request.follow is None:
        if current is not None:
            session.delete(current)
        return
    if current is None:
        session.add(
            DeploymentFollow(
                deployment_id=deployment.id, model_name=request.model, alias=request.follow, created_by=actor
            )
        )
    else:
        current.model_name, current.alias = request.model, request.follow


def followed_alias(session: Session, deployment: Deployment) -> str | None:
    found = session.get(DeploymentFollow, deployment.id)
    return found.alias if found is not None else None
