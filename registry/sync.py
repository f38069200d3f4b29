"""Keep the cache tables equal to MLflow: a full sync on a schedule, one model on a webhook.

The mirroring (`_upsert_model`) only writes the cache tables and says which versions it
inserted; the full sync and the webhook then queue builds for a version created straight
in MLflow through one rule, `queue_builds_if_new` (builds never import this module).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.backends import Catalog
from atoll.db import utcnow
from atoll.errors import NotFound
from atoll.registry.builds.service import enqueue_builds, has_builds
from atoll.registry.mlflow.adapter import MlflowModel, MlflowRegistry, MlflowVersion
from atoll.registry.models import CachedAlias, CachedModel, CachedModelTag, CachedVersion
from atoll.registry.webhooks import WebhookEvent

TEAM_TAG = "atoll.team"
REGISTERED_BY_TAG = "atoll.registered_by"  # set on every version registered through Atoll
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


def queue_builds_if_new(session: Session, *, name: str, version: CachedVersion, catalog: Catalog) -> bool:
    """Queue builds for a version created straight in MLflow; True when it queued them.

    The one rule, for the webhook and the full sync alike. One build per backend of
    `catalog` (`enqueue_builds`, actor None: audited as the system) when all of these hold:

    1. its MLflow status is `READY` (not `PENDING_REGISTRATION` or `FAILED_REGISTRATION`);
    2. it was not registered through Atoll (no `atoll.registered_by` tag: a registration
       through Atoll queues its own builds in the same transaction);
    3. the version has no `Build` row yet (the other path, or a rebuild, got there first).

    A version already cached and READY is never handed to this rule again by a sync, so a
    build deleted later is not resurrected; Rebuild / `atoll builds MODEL VERSION
    --rebuild` cover that.
    """
    if version.status != READY or REGISTERED_BY_TAG in version.tags:
        return False
    if has_builds(session, name, version.version):
        return False
    enqueue_builds(session, name=name, version=version.version, actor=None, catalog=catalog)
    return True


def apply_webhook_event(
    session: Session, registry: MlflowRegistry, event: WebhookEvent, *, catalog: Catalog
) -> None:
    """Refresh the model an MLflow webhook names and, for `model_version.created`, queue
    builds for the new version (`queue_builds_if_new`)."""
    if sync_model(session, registry, event.model_name) is None or event.created_version is None:
        return
    cached = session.scalar(
        select(CachedVersion)
        .join(CachedModel, CachedModel.id == CachedVersion.model_id)
        .where(CachedModel.name == event.model_name, CachedVersion.version == event.created_version)
    )
    if cached is not None:
        queue_builds_if_new(session, name=event.model_name, version=cached, catalog=catalog)


def full_sync(session: Session, registry: MlflowRegistry, *, catalog: Catalog) -> SyncReport:
    """Mirror every model and version; drop cached models MLflow no longer has; queue
    builds for the versions this sync found first.

    A version created straight in MLflow gets its builds from the `model_version.created`
    webhook when one is configured; without it, this sync queues them through
    `queue_builds_if_new`, for the versions it inserted into `cached_versions` or saw turn
    READY — except on the first sync: when `cached_models` was empty as this sync began,
    nothing is queued (a first sync of an existing registry would queue a build for every
    version; Rebuild / `atoll builds MODEL VERSION --rebuild` cover those). The report
    counts the versions queued in `builds_queued`.

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


def requested_sync(
    session: Session, registry: MlflowRegistry, *, actor: Principal, catalog: Catalog
) -> SyncReport:
    """A full sync someone asked for (the admin's "sync now"), audited as theirs."""
    report = full_sync(session, registry, catalog=catalog)
    audit.record(
        session,
        actor=actor,
        action="registry.sync",
        target_type="registry",
        target_id="mlflow",
        summary={"models": report.models, "versions": report.versions, "builds_queued": report.builds_queued},
    )
    return report


def _queue_builds(session: Session, found: list[tuple[str, CachedVersion]], catalog: Catalog) -> int:
    """`queue_builds_if_new` over the versions a sync found first; how many it queued."""
    return sum(
        queue_builds_if_new(session, name=name, version=cached, catalog=catalog) for name, cached in found
    )
