"""Keep the cache tables equal to MLflow: a full sync on a schedule, one model on a webhook."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from atoll.db import utcnow
from atoll.errors import NotFound
from atoll.registry.mlflow_adapter import MlflowModel, MlflowRegistry, MlflowVersion
from atoll.registry.models import CachedAlias, CachedModel, CachedModelTag, CachedVersion

TEAM_TAG = "atoll.team"


@dataclass(frozen=True)
class SyncReport:
    models: int
    versions: int
    removed_models: int
    seconds: float


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else utcnow()


def _upsert_model(session: Session, model: MlflowModel, versions: list[MlflowVersion]) -> CachedModel:
    row = session.scalar(select(CachedModel).where(CachedModel.name == model.name))
    if row is None:
        row = CachedModel(name=model.name, mlflow_updated_at=_when(model.updated_ms))
        session.add(row)
    row.description = model.description
    row.tags = model.tags
    row.team = model.tags.get(TEAM_TAG)
    row.mlflow_updated_at = _when(model.updated_ms)
    row.synced_at = utcnow()
    numbers = [int(v.version) for v in versions]
    row.latest_version = max(numbers, default=0)
    row.version_count = len(numbers)
    session.flush()

    session.execute(delete(CachedModelTag).where(CachedModelTag.model_id == row.id))
    session.add_all(
        CachedModelTag(model_id=row.id, key=k[:250], value=v[:500]) for k, v in model.tags.items()
    )
    session.execute(delete(CachedAlias).where(CachedAlias.model_id == row.id))
    session.add_all(
        CachedAlias(model_id=row.id, alias=alias, version=int(v)) for alias, v in model.aliases.items()
    )
    existing = {
        v.version: v for v in session.scalars(select(CachedVersion).where(CachedVersion.model_id == row.id))
    }
    for version in versions:
        cached = existing.pop(int(version.version), None)
        if cached is None:
            cached = CachedVersion(model_id=row.id, version=int(version.version))
            session.add(cached)
        cached.source = version.source
        cached.run_id = version.run_id
        cached.status = version.status
        cached.description = version.description
        cached.tags = version.tags
        cached.mlflow_created_at = _when(version.created_ms)
        cached.synced_at = utcnow()
    for gone in existing.values():
        session.delete(gone)
    return row


def sync_model(session: Session, registry: MlflowRegistry, name: str) -> CachedModel | None:
    """Refresh one model (after a webhook or a write through Atoll). None if MLflow lost it."""
    try:
        model = registry.get_model(name)
    except NotFound:
        session.execute(delete(CachedModel).where(CachedModel.name == name))
        return None
    return _upsert_model(session, model, list(registry.iter_versions(name)))


def full_sync(session: Session, registry: MlflowRegistry) -> SyncReport:
    """Mirror every model and version; drop cached models MLflow no longer has."""
    started = time.perf_counter()
    versions: dict[str, list[MlflowVersion]] = defaultdict(list)
    for version in registry.iter_versions():
        versions[version.name].append(version)
    seen: set[str] = set()
    for model in registry.iter_models():
        _upsert_model(session, model, versions.get(model.name, []))
        seen.add(model.name)
    stale = [name for name in session.scalars(select(CachedModel.name)) if name not in seen]
    if stale:
        session.execute(delete(CachedModel).where(CachedModel.name.in_(stale)))
    return SyncReport(
        models=len(seen),
        versions=sum(len(v) for v in versions.values()),
        removed_models=len(stale),
        seconds=round(time.perf_counter() - started, 3),
    )
