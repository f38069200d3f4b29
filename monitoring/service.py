"""Monitors: create, change, list, delete; their reference sets; banners for other pages.

Functions take the session explicitly and add an audit row to the caller's transaction for
every change. Input a person can fix raises `InvalidInput` naming the field.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import endpoints
from atoll.errors import Conflict, InvalidInput, NotFound, Unavailable
from atoll.monitoring import training_reference
from atoll.monitoring.labels import attach_labels
from atoll.monitoring.models import ALL_TRAFFIC, Monitor, MonitorColumnResult, MonitorReference, MonitorRun
from atoll.monitoring.monitor_schemas import (
    MonitorCreate,
    MonitorRead,
    MonitorUpdate,
    ReferenceRead,
    TrainingDataReference,
    TrainingDataVersion,
    WindowReference,
)
from atoll.monitoring.quality_schemas import LabelSpec
from atoll.monitoring.reference import build_profile
from atoll.monitoring.schemas import DriftSpec
from atoll.monitoring.signature_spec import spec_from_signature
from atoll.monitoring.windows import load_window
from atoll.registry.training_data import TrainingDataAccess

PARQUET_MAGIC = b"PAR1"
#: Largest reference set read: the upload route refuses a bigger body with 413 before reading
#: it; a version's training data over it is refused before it is downloaded (422).
MAX_REFERENCE_BYTES = 64 * 1024**2


def spec_of(monitor: Monitor) -> DriftSpec:
    return DriftSpec.model_validate(monitor.spec)


def labels_of(monitor: Monitor) -> LabelSpec | None:
    return LabelSpec.model_validate(monitor.labels) if monitor.labels else None


def get(session: Session, name: str) -> Monitor:
    monitor = session.scalar(select(Monitor).where(Monitor.name == name))
    if monitor is None:
        raise NotFound(f"no monitor named {name!r} (list them with `atoll monitor list`)")
    return monitor


def search(
    session: Session, *, endpoint: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Monitor], int]:
    query = select(Monitor)
    if endpoint:
        query = query.where(Monitor.endpoint == endpoint)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Monitor.name).limit(limit).offset(offset))
    return list(rows), total


def reference_of(session: Session, monitor: Monitor) -> MonitorReference | None:
    return session.scalar(select(MonitorReference).where(MonitorReference.monitor_id == monitor.id))


def read(session: Session, monitor: Monitor) -> MonitorRead:
    reference = reference_of(session, monitor)
    spec = spec_of(monitor)
    return MonitorRead(
        id=monitor.id,
        name=monitor.name,
        endpoint=monitor.endpoint,
        description=monitor.description,
        split_by=monitor.split_by,
        reference_source=monitor.reference_source,
        reference_window=monitor.reference_window,
        reference_model=monitor.reference_model,
        reference_version=monitor.reference_version,
        reference=ReferenceRead.model_validate(reference) if reference else None,
        spec=spec,
        labels=labels_of(monitor),
        features=spec.names,
        schedule_seconds=monitor.schedule_seconds,
        window_seconds=monitor.window_seconds,
        enabled=monitor.enabled,
        webhook_url=monitor.webhook_url,
        has_webhook_secret=bool(monitor.webhook_secret),
        status=monitor.status,
        status_changed_at=monitor.status_changed_at,
        last_run_at=monitor.last_run_at,
        created_by=monitor.created_by,
        created_at=monitor.created_at,
        updated_at=monitor.updated_at,
    )


def _public(body: dict[str, Any]) -> dict[str, Any]:
    """What an audit row may keep of a request: never the secret, the spec as column names."""
    kept = {k: v for k, v in body.items() if k != "webhook_secret"}
    if "webhook_secret" in body:
        kept["webhook_secret_changed"] = True
    if isinstance(kept.get("spec"), dict):
        kept["spec"] = {"columns": [c["name"] for c in kept["spec"]["columns"]]}
    return kept


def _audit(session: Session, actor: Principal, action: str, name: str, summary: dict[str, Any]) -> None:
    audit.record(session, actor=actor, action=action, target_type="monitor", target_id=name, summary=summary)


def create(
    session: Session, *, actor: Principal, body: MonitorCreate, training: TrainingDataAccess | None = None
) -> Monitor:
    """A monitor; a `window` or `training_data` reference is built now (`training` reaches MLflow)."""
    if session.scalar(select(Monitor.id).where(Monitor.name == body.name)) is not None:
        raise Conflict(f"a monitor named {body.name!r} exists; pick another name or change that one")
    try:
        endpoints.get(session, body.endpoint)
    except NotFound as exc:
        raise InvalidInput(f"endpoint: {exc.detail}") from None
    window = body.reference if isinstance(body.reference, WindowReference) else None
    monitor = Monitor(
        name=body.name,
        endpoint=body.endpoint,
        description=body.description,
        split_by=list(body.split_by),
        reference_source=body.reference.source,
        reference_window=(
            {"start": window.start.isoformat(), "end": window.end.isoformat()} if window else None
        ),
        spec=(body.spec or _signature_spec(session, body, training)).model_dump(mode="json"),
        labels=body.labels.model_dump(mode="json") if body.labels else None,
        schedule_seconds=body.schedule_seconds,
        window_seconds=body.window_seconds,
        enabled=body.enabled,
        webhook_url=body.webhook_url,
        webhook_secret=body.webhook_secret.get_secret_value() if body.webhook_secret else None,
        created_by=actor.username,
    )
    session.add(monitor)
    session.flush()
    if window is not None:
        past = load_window(session, endpoint=body.endpoint, start=window.start, end=window.end)
        if body.labels is not None:  # the reference window carries its labels (target drift, quality)
            past = attach_labels(session, past, body.labels, start=window.start, end=window.end)
        frame = past.features
        if frame.empty:
            raise InvalidInput(
                f"reference: endpoint {body.endpoint!r} logged no successful request with features "
                f"between {window.start.isoformat()} and {window.end.isoformat()}"
            )
        _store_reference(session, monitor, frame, source="window", filename=None, actor=actor)
    if isinstance(body.reference, TrainingDataReference):
        _use_training_data(session, monitor, body.reference, training=training, actor=actor)
    _audit(
        session,
        actor,
        "monitor.create",
        monitor.name,
        _public(body.model_dump(mode="json", exclude_none=True)),
    )
    return monitor


def update(session: Session, *, actor: Principal, name: str, body: MonitorUpdate) -> Monitor:
    monitor = get(session, name)
    given = body.model_dump(exclude_unset=True)
    for field in ("description", "split_by", "schedule_seconds", "window_seconds", "enabled"):
        if field in given and given[field] is not None:
            setattr(monitor, field, given[field])
    if "webhook_url" in given:
        monitor.webhook_url = body.webhook_url or None
    if body.webhook_secret is not None:
        monitor.webhook_secret = body.webhook_secret.get_secret_value()
    if "labels" in given:
        monitor.labels = body.labels.model_dump(mode="json") if body.labels else None
    if body.spec is not None:
        monitor.spec = body.spec.model_dump(mode="json")
        reference = reference_of(session, monitor)
        if reference is not None:  # re-profile the stored rows under the new spec
            frame = pd.read_parquet(io.BytesIO(reference.parquet))
            _check_columns(frame, body.spec)
            reference.profile = build_profile(frame[body.spec.names], body.spec).to_bytes()
    monitor.updated_at = utcnow()
    _audit(
        session,
        actor,
        "monitor.update",
        monitor.name,
        _public(body.model_dump(mode="json", exclude_unset=True)),
    )
    return monitor


def delete(session: Session, *, actor: Principal, name: str, reports_root: Path) -> None:
    """Delete a monitor with its reference, runs and reports."""
    monitor = get(session, name)
    session.delete(monitor)
    session.flush()
    _audit(session, actor, "monitor.delete", name, {})
    shutil.rmtree(reports_root / name, ignore_errors=True)


def read_table(data: BinaryIO, filename: str | None) -> pd.DataFrame:
    """A CSV or Parquet file (told apart by Parquet's magic bytes) as a DataFrame."""
    head = data.read(4)
    data.seek(0)
    try:
        if head == PARQUET_MAGIC:
            return pd.read_parquet(data)
        return pd.read_csv(data)
    except Exception as exc:  # pandas and pyarrow raise many types for a broken file
        kind = "Parquet" if head == PARQUET_MAGIC else "CSV"
        raise InvalidInput(
            f"file: {filename or 'the upload'} is not a readable {kind} file ({exc})"
        ) from None


def _check_columns(frame: pd.DataFrame, spec: DriftSpec) -> None:
    present = {str(c) for c in frame.columns}
    missing = [name for name in spec.names if name not in present]
    if missing:
        raise InvalidInput(
            f"file: the reference lacks the spec's columns {missing}; it has {sorted(present)}"
        )


def set_reference(
    session: Session, *, actor: Principal, name: str, data: BinaryIO, filename: str | None
) -> MonitorReference:
    """Replace the monitor's reference set with an uploaded CSV or Parquet file."""
    monitor = get(session, name)
    frame = read_table(data, filename)
    reference = _store_reference(session, monitor, frame, source="upload", filename=filename, actor=actor)
    monitor.updated_at = utcnow()
    _audit(
        session,
        actor,
        "monitor.reference",
        monitor.name,
        {"filename": filename, "rows": reference.rows, "columns": reference.columns},
    )
    return reference


def _signature_spec(session: Session, body: MonitorCreate, training: TrainingDataAccess | None) -> DriftSpec:
    """The spec from the signature of the version the reference names, else the stable one's."""
    choice = body.reference if isinstance(body.reference, TrainingDataReference) else None
    model, version = training_reference.chosen_version(session, body.endpoint, choice)
    if training is None or training.registry is None:
        raise Unavailable(
            "MLflow is not configured, so the spec cannot come from the model's signature; "
            "list spec.columns or set ATOLL_MLFLOW_TRACKING_URI"
        )
    try:
        details = training.registry.details(model, str(version))
    except NotFound:
        raise InvalidInput(
            f"spec: model {model!r} has no version {version} in MLflow", field="spec"
        ) from None
    return spec_from_signature(details.inputs, f"{model} v{version}")


def _use_training_data(
    session: Session,
    monitor: Monitor,
    choice: TrainingDataVersion,
    *,
    training: TrainingDataAccess | None,
    actor: Principal,
) -> MonitorReference:
    found = training_reference.fetch(
        session, training, endpoint=monitor.endpoint, choice=choice, max_bytes=MAX_REFERENCE_BYTES
    )
    uri = training_reference.shown_uri(found.uri)
    frame = read_table(io.BytesIO(found.content), uri)
    return _store_reference(
        session,
        monitor,
        frame,
        source="training_data",
        filename=uri,
        actor=actor,
        version=(found.model_name, found.version),
    )


def set_training_reference(
    session: Session,
    *,
    actor: Principal,
    name: str,
    choice: TrainingDataVersion,
    training: TrainingDataAccess | None,
) -> MonitorReference:
    """Replace the reference with a version's training data (default: the endpoint's stable
    version now, e.g. after a promotion)."""
    monitor = get(session, name)
    reference = _use_training_data(session, monitor, choice, training=training, actor=actor)
    monitor.updated_at = utcnow()
    _audit(
        session,
        actor,
        "monitor.reference",
        monitor.name,
        {
            "source": "training_data",
            "model": monitor.reference_model,
            "version": monitor.reference_version,
            "uri": reference.filename,
            "rows": reference.rows,
            "columns": reference.columns,
        },
    )
    return reference


def _store_reference(
    session: Session,
    monitor: Monitor,
    frame: pd.DataFrame,
    *,
    source: str,
    filename: str | None,
    actor: Principal,
    version: tuple[str, int] | None = None,
) -> MonitorReference:
    """Profile and keep `frame` as the monitor's reference, and record where it came from
    (`version`: the model version whose training data it is)."""
    spec = spec_of(monitor)
    _check_columns(frame, spec)
    kept = frame[spec.names].reset_index(drop=True)
    profile = build_profile(kept, spec)  # refuses wrong kinds, e.g. text in a numeric column
    buffer = io.BytesIO()
    kept.to_parquet(buffer, index=False)
    reference = reference_of(session, monitor) or MonitorReference(monitor_id=monitor.id)
    reference.source = source
    reference.filename = filename
    reference.rows = len(kept)
    reference.columns = spec.names
    reference.profile = profile.to_bytes()
    reference.parquet = buffer.getvalue()
    reference.created_by = actor.username
    reference.created_at = utcnow()
    session.add(reference)
    monitor.reference_source = source
    if source != "window":
        monitor.reference_window = None
    monitor.reference_model, monitor.reference_version = version or (None, None)
    session.flush()
    return reference


def parse_spec_error(error: ValidationError) -> InvalidInput:
    """A pydantic error in a monitor file (CLI) as one actionable message naming the field."""
    first = error.errors()[0]
    return InvalidInput(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


@dataclass(frozen=True)
class Banner:
    """What the endpoint and model pages show when a monitor on them drifts."""

    monitor: str
    endpoint: str
    since: datetime | None
    drifted_columns: list[str]
    groups: list[str]


def _banners(session: Session, monitors: list[Monitor]) -> list[Banner]:
    banners = []
    for monitor in monitors:
        if monitor.status != "drift":
            continue
        latest = session.scalar(
            select(MonitorRun.window_end)
            .where(MonitorRun.monitor_id == monitor.id, MonitorRun.state == "succeeded")
            .order_by(MonitorRun.window_end.desc())
            .limit(1)
        )
        runs = list(
            session.scalars(
                select(MonitorRun).where(
                    MonitorRun.monitor_id == monitor.id,
                    MonitorRun.window_end == latest,
                    MonitorRun.status == "drift",
                )
            )
        )
        columns = sorted(
            set(
                session.scalars(
                    select(MonitorColumnResult.column).where(
                        MonitorColumnResult.run_id.in_([r.id for r in runs]),
                        MonitorColumnResult.drifted.is_(True),
                    )
                )
            )
        )
        groups = [r.group_key for r in runs if r.group_key != ALL_TRAFFIC]
        banners.append(Banner(monitor.name, monitor.endpoint, monitor.status_changed_at, columns, groups))
    return banners


def banner_for_endpoint(session: Session, endpoint: str) -> list[Banner]:
    """The drifting monitors of one endpoint (an empty list: no banner)."""
    return _banners(session, list(session.scalars(select(Monitor).where(Monitor.endpoint == endpoint))))


def banner_for_model(session: Session, model_name: str, version: int | None = None) -> list[Banner]:
    """Drifting monitors whose latest runs covered the model (or that one version of it)."""
    drifting = list(session.scalars(select(Monitor).where(Monitor.status == "drift")))
    covering = []
    for monitor in drifting:
        versions = session.scalars(
            select(MonitorRun.model_versions)
            .where(MonitorRun.monitor_id == monitor.id, MonitorRun.group_key == ALL_TRAFFIC)
            .order_by(MonitorRun.window_end.desc())
            .limit(1)
        ).first()
        pairs = {(str(n), int(v)) for n, v in versions or []}
        if any(n == model_name and (version is None or v == version) for n, v in pairs):
            covering.append(monitor)
    return _banners(session, covering)
