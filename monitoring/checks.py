"""One drift run's work, in three steps that keep the database free during the heavy part.

`load` reads the reference and the window (SQL); the caller then commits, so no
transaction is open while `compute` runs the engine per group, the histograms and
Evidently's report (seconds to a minute: on SQLite an open transaction holds the write lock
and would stall every request); `store` writes the results in one short transaction.

With a label spec, `load` also joins the labels (labels.py) into the window, so the label
column is one more column for the drift engine (target drift, when the spec lists it), and
`compute` assesses model quality per slice against the reference's (quality.py). A quality
breach turns an `ok` row `degraded` (a drifting row stays `drift`; its quality says more).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from atoll.db import utcnow
from atoll.errors import AtollError, Conflict
from atoll.monitoring import service
from atoll.monitoring.drift import detect_drift
from atoll.monitoring.errors import EvidentlyError
from atoll.monitoring.evidently_adapter import run_evidently
from atoll.monitoring.histograms import histogram
from atoll.monitoring.labels import attach_labels
from atoll.monitoring.models import Monitor, MonitorColumnResult, MonitorRun
from atoll.monitoring.quality import Baseline, assess, baseline
from atoll.monitoring.quality_schemas import LabelSpec, QualityRead
from atoll.monitoring.reference import ReferenceProfile
from atoll.monitoring.schemas import DriftResult, DriftSpec
from atoll.monitoring.windows import Window, group_key, load_window

EVIDENTLY_SAMPLE_ROWS = 100_000


@dataclass(frozen=True)
class Loaded:
    spec: DriftSpec
    profile: ReferenceProfile
    reference_parquet: bytes
    window: Window
    labels: LabelSpec | None = None


@dataclass(frozen=True)
class GroupCheck:
    """One checked slice of the window: all traffic (`group` None) or one group."""

    group: dict[str, str | None] | None
    result: DriftResult
    histograms: dict[str, dict[str, Any] | None]
    model_versions: list[list[Any]]
    quality: QualityRead | None = None


@dataclass
class Checked:
    state: str  # succeeded | no_data | failed
    rows: int = 0
    message: str | None = None
    model_versions: list[list[Any]] = field(default_factory=list)
    all_traffic: GroupCheck | None = None
    groups: list[GroupCheck] = field(default_factory=list)
    report_path: str | None = None


def load(session: Session, monitor: Monitor, run: MonitorRun) -> Loaded:
    reference = service.reference_of(session, monitor)
    if reference is None:
        raise Conflict("the monitor has no reference set; upload one")
    labels = service.labels_of(monitor)
    window = load_window(session, endpoint=monitor.endpoint, start=run.window_start, end=run.window_end)
    if labels is not None:
        window = attach_labels(session, window, labels, start=run.window_start, end=run.window_end)
    return Loaded(
        spec=service.spec_of(monitor),
        profile=ReferenceProfile.from_bytes(reference.profile),
        reference_parquet=reference.parquet,
        window=window,
        labels=labels,
    )


def checked_columns(frame: pd.DataFrame, spec: DriftSpec) -> pd.DataFrame:
    """The window's columns of the spec (a missing one stays missing, so the error names it).

    A numeric column whose logged values are all null arrives as objects (JSON nulls); it is
    made float so the engine reports it `all_null` instead of refusing its type.
    """
    kept = frame[[c for c in frame.columns if c in spec.names]]
    numeric = {c.name for c in spec.columns if c.kind == "numeric"}
    empty = [c for c in kept.columns if c in numeric and kept[c].dtype == object and kept[c].isna().all()]
    return kept.astype(dict.fromkeys(empty, "float64")) if empty else kept


def _check(
    loaded: Loaded, part: Window, group: dict[str, str | None] | None, reference: Baseline | None
) -> tuple[GroupCheck, pd.DataFrame]:
    frame = checked_columns(part.features, loaded.spec)
    result = detect_drift(loaded.profile, frame, loaded.spec)
    histograms = {
        c.column: histogram(loaded.profile.columns[c.column], frame[c.column]) for c in result.columns
    }
    versions = [list(p) for p in part.model_versions()]
    quality = assess(part.features, loaded.labels, reference) if loaded.labels else None
    return GroupCheck(group, result, histograms, versions, quality), frame


def compute(monitor: Monitor, run: MonitorRun, loaded: Loaded, reports_root: Path) -> Checked:
    """The engine on all traffic and on each group, then Evidently's report (no database)."""
    window = loaded.window
    checked = Checked(
        state="running", rows=len(window), model_versions=[list(p) for p in window.model_versions()]
    )
    if len(window) == 0:
        checked.state, checked.message = "no_data", "no successful request with features in this window"
        return checked
    try:
        reference = pd.read_parquet(io.BytesIO(loaded.reference_parquet))
        base = baseline(reference, loaded.labels) if loaded.labels else None
        checked.all_traffic, frame = _check(loaded, window, None, base)
        if checked.all_traffic.result.status == "no_data":
            checked.state, checked.message = "no_data", "no column of the spec has a value in this window"
            return checked
        checked.groups = [
            _check(loaded, part, group, base)[0] for group, part in window.groups(monitor.split_by)
        ]
        if window.truncated:
            checked.message = f"the window was cut at {len(window):,} rows"
        report = reports_root / monitor.name / f"run-{run.id}.html"
        run_evidently(reference, frame, loaded.spec, html_path=report, sample_rows=EVIDENTLY_SAMPLE_ROWS)
        checked.report_path = str(report)
        checked.state = "succeeded"
    except (AtollError, EvidentlyError) as exc:
        checked.state, checked.message = "failed", exc.detail
    return checked


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _store_result(session: Session, row: MonitorRun, check: GroupCheck) -> None:
    result = check.result
    chosen = result.evidently if result.alert_rule == "evidently" else result.corrected
    row.rows = result.current_rows
    row.model_versions = check.model_versions
    row.status = result.status if result.status != "no_data" else None
    row.quality = check.quality.model_dump(mode="json") if check.quality else None
    if row.status == "ok" and check.quality is not None and check.quality.status == "breach":
        row.status = "degraded"
    row.alert_rule = result.alert_rule
    row.evidently_drifted = result.evidently.drifted if result.evidently else None
    row.corrected_drifted = result.corrected.drifted if result.corrected else None
    row.drift_share = chosen.share if chosen else None
    row.tested_columns = chosen.tested_columns if chosen else None
    row.drifted_columns = chosen.drifted_columns if chosen else None
    for column in result.columns:
        session.add(
            MonitorColumnResult(
                run_id=row.id,
                column=column.column,
                kind=column.kind,
                status=column.status,
                method=column.method,
                score_type=column.score_type,
                score=_finite(column.score),
                threshold=column.threshold,
                drifted=column.drifted,
                adjusted_p_value=_finite(column.adjusted_p_value),
                bh_drifted=column.drifted_corrected,
                reference_nulls=column.reference_nulls,
                null_count=column.current_nulls,
                detail=column.detail,
                histogram=check.histograms.get(column.column),
            )
        )


def store(session: Session, monitor: Monitor, run: MonitorRun, checked: Checked) -> None:
    """Write what `compute` found: the run row, its group rows, every column's result."""
    run.state, run.message, run.rows = checked.state, checked.message, checked.rows
    run.model_versions = checked.model_versions
    run.report_path = checked.report_path
    run.finished_at = utcnow()
    if checked.all_traffic is not None:
        _store_result(session, run, checked.all_traffic)
        run.model_versions = checked.model_versions
    for check in checked.groups:
        assert check.group is not None
        row = MonitorRun(
            monitor_id=monitor.id,
            job_id=run.job_id,
            trigger=run.trigger,
            window_start=run.window_start,
            window_end=run.window_end,
            group_key=group_key(check.group),
            deployment=check.group.get("deployment"),
            backend=check.group.get("backend"),
            arm=check.group.get("arm"),
            started_at=run.started_at,
            finished_at=run.finished_at,
        )
        session.add(row)
        session.flush()
        _store_result(session, row, check)
        row.state = "succeeded" if row.status else "no_data"
