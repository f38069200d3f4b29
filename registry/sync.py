"""Keep the cache tables equal to MLflow: a full sync on a schedule, one model on a webhook.

The mirroring (`_upsert_model`) only writes the cache tables and says which versions it
inserted; `full_sync` then queues builds for the new ones through `registry/builds.py`
(which never imports this module).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from atoll.backends import Catalog
from atoll.db import utcnow
from atoll.errors import NotFound
from atoll.registry.builds import enqueue_builds
from atoll.registry.mlflow_adapter import MlflowModel, MlflowRegistry, MlflowVersion
from atoll.registry.models import Build, CachedAlias, CachedModel, CachedModelTag, CachedVersion

TEAM_TAG = "atoll.team"
# MLflow's ModelVersionStatus: READY, PENDING_REGISTRATION, FAILED_REGISTRATION.
READY = "READY"


@dataclass(frozen=True)
class SyncReport:
    models: int
    versions: int
    removed_models: int
    builds_queued: int  # versions this sync queued builds for (one build per backend each)
    seconds: float


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else utcnow()


def _upsert_model(
    session: Session, model: MlflowModel, versions: list[MlflowVersion]
) -> tuple[CachedModel, list[CachedVersion]]:
    """Write one model, its tags, aliases and versions into the cache.

    Returns the row and the versions that became buildable here: inserted by this call,
    or already cached and turning READY now (a version MLflow was still registering).
    """
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
    inserted: list[CachedVersion] = []
    for version in versions:
        cached = existing.pop(int(version.version), None)
        if cached is None:
            cached = CachedVersion(model_id=row.id, version=int(version.version))
            session.add(cached)
            inserted.append(cached)
        elif cached.status != READY and version.status == READY:
            inserted.append(cached)
        cached.source = version.source
        cached.run_id = version.run_id
        cached.status = version.status
        cached.description = version.description
        cached.tags = version.tags
        cached.mlflow_created_at = _when(version.created_ms)
        cached.synced_at = utcnow()
    for gone in existing.values():
        session.delete(gone)
    return row, inserted


def sync_model(session: Session, registry: MlflowRegistry, name: str) -> CachedModel | None:
    """Refresh one model (after a webhook or a write through Atoll). None if MLflow lost it."""
    try:
        model = registry.get_model(name)
    except NotFound:
        session.execute(delete(CachedModel).where(CachedModel.name == name))
        return None
    row, _inserted = _upsert_model(session, model, list(registry.iter_versions(name)))
    return row


def full_sync(session: Session, registry: MlflowRegistry, *, catalog: Catalog) -> SyncReport:
    """Mirror every model and version; drop cached models MLflow no longer has; queue
    builds for the versions this sync found first.

    A version created straight in MLflow gets its builds from the `model_version.created`
    webhook when one is configured; without it, this sync queues them. For each version,
    one build per backend of `catalog` (`enqueue_builds`, actor None: audited as the
    system), counted in `builds_queued`, when all of these hold:

    1. this sync inserted the version into `cached_versions`, or saw it turn READY (a
       version already cached and READY is never queued again by a sync);
    2. it is not the first sync: when `cached_models` was empty as this sync began,
       nothing is queued (a first sync of an existing registry would queue a build for
       every version; Rebuild / `atoll builds MODEL VERSION --rebuild` cover those);
    3. the version has no `Build` row yet (the webhook or a registration through Atoll
       queued it already);
    4. its MLflow status is `READY` (not `PENDING_REGISTRATION` or `FAILED_REGISTRATION`).

    Everything is written in the caller's transaction: the cache rows, the build rows,
    their jobs and the audit events exist only if the caller commits.
    """
    started = time.perf_counter()
    first_sync = not session.scalar(select(func.count()).select_from(CachedModel))
    versions: dict[str, list[MlflowVersion]] = defaultdict(list)
    for version in registry.iter_versions():
        versions[version.name].append(version)
    seen: set[str] = set()
    found: list[tuple[str, CachedVersion]] = []
    for model in registry.iter_models():
        _row, inserted = _upsert_model(session, model, versions.get(model.name, []))
        found.extend((model.name, cached) for cached in inserted)
        seen.add(model.name)
    stale = [name for name in session.scalars(select(CachedModel.name)) if name not in seen]
    if stale:
        session.execute(delete(CachedModel).where(CachedModel.name.in_(stale)))
    queued = 0 if first_sync else _queue_builds(session, found, catalog)
    return SyncReport(
        models=len(seen),
        versions=sum(len(v) for v in versions.values()),
        removed_models=len(stale),
        builds_queued=queued,
        seconds=round(time.perf_counter() - started, 3),
    )


def _queue_builds(session: Session, found: list[tuple[str, CachedVersion]], catalog: Catalog) -> int:
    """Queue builds for newly cached versions that are READY and have no build yet."""
    queued = 0
    for name, cached in found:
        if cached.status != READY:
            continue
        built = session.scalar(
            select(Build.id).where(Build.model_name == name, Build.version == cached.version).limit(1)
        )
        if built is not None:
            continue
        enqueue_builds(session, name=name, version=cached.version, actor=None, catalog=catalog)
        queued += 1
    return queued
