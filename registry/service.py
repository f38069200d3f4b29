"""Registry services: listing from the cache, and writes that go through MLflow first.

Every write goes to MLflow (the source of truth), then refreshes that model's cache rows
and records an audit row in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.models import User
from atoll.auth.policy import Principal, Scope
from atoll.backends import Catalog
from atoll.errors import Forbidden, NotFound
from atoll.registry import names
from atoll.registry.builds.service import enqueue_builds
from atoll.registry.lineage import lineage_from_tags, lineage_tags
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.models import CachedAlias, CachedModel, CachedModelTag, CachedVersion
from atoll.registry.schemas import ModelSummary, RegisterVersion, VersionRead
from atoll.registry.sync import REGISTERED_BY_TAG, TEAM_TAG, sync_model


@dataclass(frozen=True)
class ModelFilter:
    q: str | None = None  # substring of the name
    tag: str | None = None  # "key=value" or "key"
    team: str | None = None
    alias: str | None = None


def _aliases(session: Session, model_ids: list[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {i: {} for i in model_ids}
    rows = session.execute(
        select(CachedAlias.model_id, CachedAlias.alias, CachedAlias.version).where(
            CachedAlias.model_id.in_(model_ids)
        )
    )
    for model_id, alias, version in rows:
        found[model_id][alias] = version
    return found


def _summary(row: CachedModel, aliases: dict[str, int]) -> ModelSummary:
    return ModelSummary(
        name=row.name,
        description=row.description,
        team=row.team,
        tags=row.tags,
        aliases=aliases,
        latest_version=row.latest_version,
        version_count=row.version_count,
        updated_at=row.mlflow_updated_at,
    )


def list_models(
    session: Session, *, where: ModelFilter, limit: int, offset: int
) -> tuple[list[ModelSummary], int]:
    query = select(CachedModel)
    if where.q:
        query = query.where(CachedModel.name.ilike(f"%{where.q}%"))
    if where.team:
        query = query.where(CachedModel.team == where.team)
    if where.tag:
        key, has_value, value = where.tag.partition("=")
        tagged = select(CachedModelTag.model_id).where(CachedModelTag.key == key)
        if has_value:
            tagged = tagged.where(CachedModelTag.value == value)
        query = query.where(CachedModel.id.in_(tagged))
    if where.alias:
        query = query.where(
            CachedModel.id.in_(select(CachedAlias.model_id).where(CachedAlias.alias == where.alias))
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(CachedModel.name).limit(limit).offset(offset)))
    aliases = _aliases(session, [r.id for r in rows])
    return [_summary(r, aliases[r.id]) for r in rows], total


def cached_model(session: Session, name: str) -> CachedModel:
    row = session.scalar(select(CachedModel).where(CachedModel.name == name))
    if row is None:
        raise NotFound(f"model {name!r} is not registered (or not synced yet: try `atoll models sync`)")
    return row


def get_model(session: Session, name: str) -> ModelSummary:
    row = cached_model(session, name)
    return _summary(row, _aliases(session, [row.id])[row.id])


def _version_read(model: CachedModel, row: CachedVersion, aliases: dict[str, int]) -> VersionRead:
    return VersionRead(
        model_name=model.name,
        version=row.version,
        source=row.source,
        run_id=row.run_id,
        status=row.status,
        description=row.description,
        tags=row.tags,
        aliases=sorted(a for a, v in aliases.items() if v == row.version),
        lineage=lineage_from_tags(row.tags),
        created_at=row.mlflow_created_at,
    )


def list_versions(session: Session, name: str, *, limit: int, offset: int) -> tuple[list[VersionRead], int]:
    model = cached_model(session, name)
    aliases = _aliases(session, [model.id])[model.id]
    query = select(CachedVersion).where(CachedVersion.model_id == model.id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(CachedVersion.version.desc()).limit(limit).offset(offset))
    return [_version_read(model, r, aliases) for r in rows], total


def get_version(session: Session, name: str, version: int) -> VersionRead:
    model = cached_model(session, name)
    row = session.scalar(
        select(CachedVersion).where(CachedVersion.model_id == model.id, CachedVersion.version == version)
    )
    if row is None:
        raise NotFound(f"model {name!r} has no version {version} (latest is {model.latest_version})")
    return _version_read(model, row, _aliases(session, [model.id])[model.id])


def check_owner(session: Session, *, actor: Principal, team: str | None, name: str) -> None:
    """Models owned by a team change only through its members (and admins)."""
    if team is None or actor.can(Scope.admin):
        return
    user = session.get(User, actor.user_id)
    if user is None or team not in {t.name for t in user.teams}:
        raise Forbidden(f"model {name!r} is owned by team {team!r}; you are not a member")


def register_version(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    body: RegisterVersion,
    catalog: Catalog,
) -> VersionRead:
    names.check_model_name(name)
    for key in body.tags:
        names.check_tag_key(key)
    existing = session.scalar(select(CachedModel).where(CachedModel.name == name))
    check_owner(session, actor=actor, team=existing.team if existing else None, name=name)
    source, run_id = registry.resolve_source(body.source_uri)
    return _register(
        session, registry, actor=actor, name=name, body=body, source=source, run_id=run_id, catalog=catalog
    )


def register_model_dir(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    model_dir: Path,
    body: RegisterVersion,
    catalog: Catalog,
) -> VersionRead:
    """Register a local MLflow model directory (already fully received and unpacked)."""
    names.check_model_name(name)
    existing = session.scalar(select(CachedModel).where(CachedModel.name == name))
    check_owner(session, actor=actor, team=existing.team if existing else None, name=name)
    source, run_id = registry.upload_model(model_dir)
    return _register(
        session, registry, actor=actor, name=name, body=body, source=source, run_id=run_id, catalog=catalog
    )


def _register(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    body: RegisterVersion,
    source: str,
    run_id: str | None,
    catalog: Catalog,
) -> VersionRead:
    model_tags = {TEAM_TAG: body.team} if body.team else {}
    registry.ensure_model(name, tags=model_tags)
    tags = {**body.tags, **lineage_tags(body.lineage), REGISTERED_BY_TAG: actor.username}
    created = registry.create_version(
        name, source=source, run_id=run_id, tags=tags, description=body.description
    )
    sync_model(session, registry, name)
    audit.record(
        session,
        actor=actor,
        action="model_version.register",
        target_type="model_version",
        target_id=f"{name}/{created.version}",
        summary={"source": source, "run_id": run_id, "lineage": body.lineage},
    )
    enqueue_builds(session, name=name, version=int(created.version), actor=actor, catalog=catalog)
    return get_version(session, name, int(created.version))


def update_tags(
    session: Session,
    registry: MlflowRegistry,
    *,
    actor: Principal,
    name: str,
    version: int | None,
    tags: dict[str, str],
    description: str | None,
) -> None:
    model = cached_model(session, name)
    check_owner(session, actor=actor, team=model.team, name=name)
    for key in tags:
        names.check_tag_key(key)
        if key == TEAM_TAG and version is None and not actor.can(Scope.admin):
            raise Forbidden("changing a model's owning team needs the admin role")
    if version is None:
        for key, value in tags.items():
            registry.set_model_tag(name, key, value)
        if description is not None:
            registry.set_model_description(name, description)
    else:
        get_version(session, name, version)
        for key, value in tags.items():
            registry.set_version_tag(name, str(version), key, value)
        if description is not None:
            registry.set_version_description(name, str(version), description)
    sync_model(session, registry, name)
    target = name if version is None else f"{name}/{version}"
    audit.record(
        session,
        actor=actor,
        action="model.update" if version is None else "model_version.update",
        target_type="model" if version is None else "model_version",
        target_id=target,
        summary={"tags": tags, "description": description is not None},
    )
