"""Experiments: an A/B test over an endpoint's deployments, its results over time, its allocations.

An experiment owns its endpoint's split while it runs (``traffic_owner = experiment:KEY``)
and routes with its own salt, so its units are assigned afresh and its exposures are the
rows of ``exposure_events`` whose ``split`` is that salt. Arms and metrics are JSON in the
shapes of ``abtest.schemas`` (``ArmIn``, ``MetricIn``): read once per analysis, never queried
by their fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from atoll.db import Base, utcnow
from atoll.deployer.models import new_salt

DRAFT, RUNNING, STOPPED, CONCLUDED = "draft", "running", "stopped", "concluded"
STATES = (DRAFT, RUNNING, STOPPED, CONCLUDED)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(63), unique=True)  # a DNS-1123 label
    endpoint: Mapped[str] = mapped_column(ForeignKey("endpoints.name"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    salt: Mapped[str] = mapped_column(String(64), default=new_salt)
    unit_key: Mapped[str] = mapped_column(String(64), default="unit_id")
    arms: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{deployment, weight, control}]
    metrics: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [MetricIn]
    hypothesis: Mapped[str] = mapped_column(String(16), default="superiority")
    margin: Mapped[float] = mapped_column(Float, default=0.0)
    margin_type: Mapped[str] = mapped_column(String(8), default="relative")
    alpha: Mapped[float] = mapped_column(Float, default=0.05)
    method: Mapped[str] = mapped_column(String(16), default="fixed")  # fixed | sequential
    power: Mapped[float] = mapped_column(Float, default=0.8)
    mde: Mapped[float | None] = mapped_column(Float)
    planned_n_per_arm: Mapped[int | None]
    planned_end: Mapped[datetime | None]
    attribution_seconds: Mapped[int] = mapped_column(default=86_400)
    allocation: Mapped[str] = mapped_column(String(16), default="fixed")  # fixed | thompson
    allocation_floor: Mapped[int] = mapped_column(default=10)  # percent per arm
    allocation_every_seconds: Mapped[int] = mapped_column(default=3600)
    promote_alias: Mapped[str] = mapped_column(String(64), default="champion")
    state: Mapped[str] = mapped_column(String(16), default=DRAFT, index=True)
    previous_weights: Mapped[dict[str, int] | None] = mapped_column(JSON)
    previous_salt: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the recorded conclusion
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_by: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    stopped_by: Mapped[str | None] = mapped_column(String(64))
    stopped_at: Mapped[datetime | None]
    concluded_by: Mapped[str | None] = mapped_column(String(64))
    concluded_at: Mapped[datetime | None]
    reallocated_at: Mapped[datetime | None]

    @property
    def owner(self) -> str:
        """The endpoint's ``traffic_owner`` while this experiment runs."""
        return f"experiment:{self.key}"


class ExperimentResult(Base):
    """One snapshot of one arm and metric: the sums and the lift then (the cumulative-lift chart)."""

    __tablename__ = "experiment_results"
    __table_args__ = (Index("ix_experiment_results_experiment_metric_ts", "experiment_id", "metric", "ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    arm: Mapped[str] = mapped_column(String(63))
    metric: Mapped[str] = mapped_column(String(128))
    n: Mapped[int]
    sum: Mapped[float] = mapped_column(Float)
    sum_squares: Mapped[float] = mapped_column(Float)
    sum_x: Mapped[float | None] = mapped_column(Float)  # denominator (ratio) or covariate (CUPED)
    sum_x_squares: Mapped[float | None] = mapped_column(Float)
    sum_products: Mapped[float | None] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float)
    absolute_lift: Mapped[float | None] = mapped_column(Float)  # null for the control arm
    relative_lift: Mapped[float | None] = mapped_column(Float)
    relative_lower: Mapped[float | None] = mapped_column(Float)
    relative_upper: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)


class AllocationChange(Base):
    """A re-weighting of an adaptive experiment: the weights set and the posteriors behind them."""

    __tablename__ = "allocation_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    weights: Mapped[dict[str, int]] = mapped_column(JSON)
    posterior: Mapped[dict[str, Any]] = mapped_column(JSON)  # arm -> {alpha, beta, mean, n}
    reason: Mapped[str] = mapped_column(Text, default="")
