"""Monitoring tables: monitors, their reference sets, runs and per-column results.

A **monitor** watches one endpoint's inference log: every `schedule_seconds` the scheduler
queues a run over the last `window_seconds` of traffic. Its reference set is kept once
(`MonitorReference`: the drift engine's profile, and the rows themselves as Parquet for
Evidently's report). A **run** is one window: an `all` row (the whole endpoint) plus, when
the monitor splits, one row per group (`deployment=...,backend=...`); each row has its
per-column results. `(monitor_id, window_end, group_key)` is unique, so a scheduler that
runs twice, or a worker that dies mid-run, never doubles a run.

The webhook secret signs alerts, so it is stored as given (like MLflow's webhook secrets),
never returned by the API and never logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from atoll.db import Base, utcnow

#: The group key of a run row over all of a window's traffic.
ALL_TRAFFIC = "all"


class Monitor(Base):
    __tablename__ = "monitors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    endpoint: Mapped[str] = mapped_column(String(63), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    split_by: Mapped[list[str]] = mapped_column(JSON, default=list)  # of deployment, backend, arm
    reference_source: Mapped[str] = mapped_column(String(16))  # upload | window | training_data
    reference_window: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"start": iso, "end": iso}
    #: The model version whose training data is the reference (source training_data).
    reference_model: Mapped[str | None] = mapped_column(String(256))
    reference_version: Mapped[int | None]
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # a DriftSpec
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a LabelSpec (migration 0010)
    schedule_seconds: Mapped[int]
    window_seconds: Mapped[int]
    enabled: Mapped[bool] = mapped_column(default=True)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_secret: Mapped[str | None] = mapped_column(String(255))
    #: ok | drift | degraded | no_data | failed
    status: Mapped[str] = mapped_column(String(16), default="no_data")
    status_changed_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorReference(Base):
    """A monitor's reference set: the engine's profile and the rows (Parquet) for Evidently."""

    __tablename__ = "monitor_references"

    id: Mapped[int] = mapped_column(primary_key=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id", ondelete="CASCADE"), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str | None] = mapped_column(String(255))
    rows: Mapped[int]
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    profile: Mapped[bytes] = mapped_column(LargeBinary)
    parquet: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorRun(Base):
    __tablename__ = "monitor_runs"
    __table_args__ = (
        UniqueConstraint("monitor_id", "window_end", "group_key"),
        Index("ix_monitor_runs_monitor_created", "monitor_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id", ondelete="CASCADE"))
    job_id: Mapped[int | None]
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    group_key: Mapped[str] = mapped_column(String(255), default=ALL_TRAFFIC)
    deployment: Mapped[str | None] = mapped_column(String(128))
    backend: Mapped[str | None] = mapped_column(String(32))
    arm: Mapped[str | None] = mapped_column(String(128))
    #: queued | running | succeeded | no_data | failed
    state: Mapped[str] = mapped_column(String(16), default="queued")
    rows: Mapped[int] = mapped_column(default=0)
    #: ok | drift | degraded (model quality breached its max_drop; succeeded runs)
    status: Mapped[str | None] = mapped_column(String(16))
    alert_rule: Mapped[str | None] = mapped_column(String(16))  # evidently | corrected
    evidently_drifted: Mapped[bool | None]
    corrected_drifted: Mapped[bool | None]
    drift_share: Mapped[float | None] = mapped_column(Float)  # drifted share under the alert rule
    tested_columns: Mapped[int | None]
    drifted_columns: Mapped[int | None]
    message: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(String(1024))
    model_versions: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)  # [[name, version], ...]
    #: Model quality (a QualityRead) when the monitor has labels (migration 0010).
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def has_report(self) -> bool:
        return bool(self.report_path)


class MonitorColumnResult(Base):
    __tablename__ = "monitor_column_results"
    __table_args__ = (UniqueConstraint("run_id", "column"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("monitor_runs.id", ondelete="CASCADE"), index=True)
    column: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # tested | constant | all_null
    method: Mapped[str | None] = mapped_column(String(32))
    score_type: Mapped[str | None] = mapped_column(String(16))  # p_value | distance
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    drifted: Mapped[bool | None]
    adjusted_p_value: Mapped[float | None] = mapped_column(Float)
    bh_drifted: Mapped[bool | None]
    reference_nulls: Mapped[int] = mapped_column(default=0)
    null_count: Mapped[int] = mapped_column(default=0)
    detail: Mapped[str | None] = mapped_column(Text)
    #: Small histograms for the portal: {"labels": [...], "reference": [...], "current": [...]} (shares).
    histogram: Mapped[dict[str, Any] | None] = mapped_column(JSON)
