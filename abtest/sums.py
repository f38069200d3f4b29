"""Per-arm summary statistics of an experiment, computed by aggregate SQL over the event log.

The statistics engine (`atoll.abtest.stats`) consumes per arm and metric the sums
n, Σy, Σy², Σx, Σx², Σxy. This module produces them with ONE statement per metric
(SQLAlchemy Core, the same code on SQLite and PostgreSQL), so no raw event ever travels
into Python:

1. each unit's FIRST exposure in the split (earliest `ts`, ties broken by row id): its
   deployment is the unit's arm for good. Exposures under other arms later (a second router
   replica, a weight change) are ignored; `units_in_several_arms` counts them;
2. the unit's outcomes of the metric with `ts` in [exposure, exposure + attribution window]
   (and <= `until`) summed per unit; a unit without outcomes counts with y = 0;
   binary: y = 1 when there is any; mean: y = Σ value; ratio: y = Σ numerator and
   x = Σ denominator; CUPED: x = Σ covariate over [exposure - pre-period, exposure);
3. per arm: n = units, and the sums of y, y², x, x², xy over them.

Outcomes are matched by metric and unit, not by the `experiment` column of the event (a
service may send one conversion for every experiment the unit is in). Outcomes of units
never exposed in the split are ignored by the sums and counted by `unexposed_outcomes`.

Window edges: exact on PostgreSQL; on SQLite the upper edge is compared through
`julianday` in whole milliseconds (SQLite's own date arithmetic resolution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Interval,
    SQLColumnExpression,
    Subquery,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from atoll.abtest.stats.schemas import ArmData
from atoll.db import UTCDateTime
from atoll.events import ExposureEvent, OutcomeEvent

MILLISECONDS_PER_DAY = 86_400_000.0
ANALYSIS_WORK_MEM = "256MB"


@dataclass(frozen=True)
class MetricQuery:
    """Which outcome events make a metric's per-unit values (see the module docstring)."""

    type: Literal["binary", "mean", "ratio"]
    event: str
    denominator_event: str | None = None
    covariate_event: str | None = None
    pre_period_seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.type == "ratio") != (self.denominator_event is not None):
            raise ValueError("denominator_event: required for a ratio metric, and only for one")
        if self.covariate_event is not None:
            if self.type == "ratio":
                raise ValueError("covariate_event: CUPED is supported for binary and mean metrics, not ratio")
            if self.pre_period_seconds is None or self.pre_period_seconds <= 0:
                raise ValueError("pre_period_seconds: a positive pre-period is required with a covariate")

    @property
    def events(self) -> list[str]:
        """Every outcome metric the query reads (for `unexposed_outcomes`, the ingestion check)."""
        names = [self.event, self.denominator_event, self.covariate_event]
        return list(dict.fromkeys(name for name in names if name is not None))


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _seconds_offset(
    session: Session,
    ts: SQLColumnExpression[Any],
    start: SQLColumnExpression[Any],
    seconds: float,
    *,
    at_most: bool,
) -> ColumnElement[bool]:
    """`ts <= start + seconds` (`at_most`) or `ts >= start + seconds`, on either dialect."""
    if _is_postgres(session):
        edge = start + literal(timedelta(seconds=seconds), Interval())
        return ts <= edge if at_most else ts >= edge
    # SQLite's date functions resolve milliseconds: compare whole milliseconds, so an
    # outcome exactly on the edge is inside whatever the float rounding of julianday.
    elapsed_ms = func.round((func.julianday(ts) - func.julianday(start)) * MILLISECONDS_PER_DAY)
    edge_ms = round(seconds * 1000)
    return elapsed_ms <= edge_ms if at_most else elapsed_ms >= edge_ms


def _first_exposures(
    split: str,
    until: datetime | None,
    arms: Sequence[str] | None = None,
    since: datetime | None = None,
) -> Subquery:
    """One row per unit: (unit_id, arm, exposed_at) of its first exposure in the split."""
    exposure = ExposureEvent
    order = func.row_number().over(partition_by=exposure.unit_id, order_by=(exposure.ts, exposure.id))
    ranked = select(
        exposure.unit_id,
        exposure.deployment.label("arm"),
        exposure.ts.label("exposed_at"),
        order.label("rank"),
    ).where(exposure.split == split)
    if until is not None:
        ranked = ranked.where(exposure.ts <= literal(until, UTCDateTime()))
    ranked_rows = ranked.subquery("ranked")
    first = select(ranked_rows.c.unit_id, ranked_rows.c.arm, ranked_rows.c.exposed_at).where(
        ranked_rows.c.rank <= 1  # not `== 1`: PostgreSQL estimates that at 0.5% of the rows
    )
    if arms is not None:  # after ranking: a unit first seen outside the arms stays out
        first = first.where(ranked_rows.c.arm.in_(list(arms)))
    if since is not None:  # after ranking too: a unit assigned before `since` stays out
        first = first.where(ranked_rows.c.exposed_at >= literal(since, UTCDateTime()))
    return first.subquery("exposed")


def _per_unit(
    session: Session,
    exposed: Subquery,
    metric: MetricQuery,
    attribution_seconds: float,
    until: datetime | None,
) -> Subquery:
    """One row per exposed unit: its arm, y and x (x = 0 when the metric has none)."""
    outcome = OutcomeEvent
    exposed_at = exposed.c.exposed_at
    after = [
        outcome.ts >= exposed_at,
        _seconds_offset(session, outcome.ts, exposed_at, attribution_seconds, at_most=True),
    ]
    if until is not None:
        after.append(outcome.ts <= literal(until, UTCDateTime()))
    window: ColumnElement[bool] = and_(*after)
    in_y: ColumnElement[bool] = outcome.metric == metric.event
    in_x: ColumnElement[bool] | None = None
    if metric.denominator_event is not None:
        in_x = outcome.metric == metric.denominator_event
    if metric.covariate_event is not None and metric.pre_period_seconds is not None:
        pre_period = and_(
            outcome.metric == metric.covariate_event,
            outcome.ts < exposed_at,
            _seconds_offset(session, outcome.ts, exposed_at, -metric.pre_period_seconds, at_most=False),
        )
        window = or_(and_(outcome.metric == metric.event, window), pre_period)
        # The covariate may be the metric itself (its pre-period value): tell them by time.
        in_y = and_(in_y, outcome.ts >= exposed_at)
        in_x = and_(outcome.metric == metric.covariate_event, outcome.ts < exposed_at)
    joined = exposed.outerjoin(
        OutcomeEvent.__table__,
        and_(outcome.unit_id == exposed.c.unit_id, outcome.metric.in_(metric.events), window),
    )
    y: ColumnElement[Any]
    if metric.type == "binary":
        y = func.max(case((in_y, 1), else_=0))
    else:
        y = func.sum(case((in_y, outcome.value), else_=0.0))
    x: ColumnElement[Any] = (
        func.sum(case((in_x, outcome.value), else_=0.0)) if in_x is not None else literal(0.0)
    )
    # Grouped by the unit alone (its arm is one value per unit): both sides arrive in unit
    # order from the covering indexes (migration 0009), so PostgreSQL can merge-join and
    # aggregate per unit while streaming, without sorting or hashing a million units.
    return (
        select(func.min(exposed.c.arm).label("arm"), y.label("y"), x.label("x"))
        .select_from(joined)
        .group_by(exposed.c.unit_id)
        .subquery("per_unit")
    )


def arm_sums(
    session: Session,
    *,
    split: str,
    arms: Sequence[str],
    metric: MetricQuery,
    attribution_seconds: float,
    until: datetime | None = None,
    since: datetime | None = None,
) -> dict[str, ArmData]:
    """The engine's `ArmData` per arm for one metric, from one aggregate SQL statement.

    `split` is the experiment's salt (`ExposureEvent.split`), `arms` its deployments; an arm
    nobody was exposed to gets n = 0. `until` cuts exposures and outcomes (a snapshot in time);
    `since` keeps only units first exposed at or after it (under adaptive allocation: the
    units of the last allocation stage, see docs/adaptive-allocation.md).
    """
    if attribution_seconds < 0:
        raise ValueError("attribution_seconds: must be >= 0")
    exposed = _first_exposures(split, until, arms, since)
    unit = _per_unit(session, exposed, metric, attribution_seconds, until)
    statement = select(
        unit.c.arm,
        func.count(),
        func.sum(unit.c.y),
        func.sum(unit.c.y * unit.c.y),
        func.sum(unit.c.x),
        func.sum(unit.c.x * unit.c.x),
        func.sum(unit.c.x * unit.c.y),
    ).group_by(unit.c.arm)
    if _is_postgres(session):
        # The per-unit aggregate holds one row per exposed unit (about 100 bytes): give it
        # the memory to stay a single in-memory hash (the default 4 MB spills to disk from
        # ~40,000 units). SET LOCAL: this transaction only.
        session.execute(text(f"SET LOCAL work_mem = '{ANALYSIS_WORK_MEM}'"))
    found = {row[0]: row[1:] for row in session.execute(statement)}
    return {arm: _arm_data(metric, found.get(arm)) for arm in arms}


def _arm_data(metric: MetricQuery, row: Sequence[Any] | None) -> ArmData:
    if row is None:
        n, total, squares, x_total, x_squares, products = 0, 0.0, 0.0, 0.0, 0.0, 0.0
    else:
        n, total, squares, x_total, x_squares, products = (int(row[0]), *(float(v or 0) for v in row[1:]))
    if metric.type == "ratio":
        return ArmData(
            n=n, sum=total, sum_squares=squares, denominator_sum=x_total,
            denominator_sum_squares=x_squares, sum_products=products,
        )  # fmt: skip
    if metric.covariate_event is not None:
        return ArmData(
            n=n, sum=total, sum_squares=squares, pre_sum=x_total, pre_sum_squares=x_squares,
            sum_products=products,
        )  # fmt: skip
    return ArmData(n=n, sum=total, sum_squares=squares)


def exposures_per_arm(
    session: Session, *, split: str, until: datetime | None = None, since: datetime | None = None
) -> dict[str, int]:
    """Units per arm by their first exposure in the split: the observed counts of the SRM check."""
    exposed = _first_exposures(split, until, since=since)
    statement = select(exposed.c.arm, func.count()).group_by(exposed.c.arm)
    return {arm: int(count) for arm, count in session.execute(statement)}


def units_in_several_arms(session: Session, *, split: str, until: datetime | None = None) -> int:
    """Units exposed under more than one arm of the split (each counted once, in its first arm)."""
    exposure = ExposureEvent
    units = select(exposure.unit_id).where(exposure.split == split)
    if until is not None:
        units = units.where(exposure.ts <= literal(until, UTCDateTime()))
    crossed = units.group_by(exposure.unit_id).having(func.count(exposure.deployment.distinct()) > 1)
    return int(session.scalar(select(func.count()).select_from(crossed.subquery())) or 0)


def unexposed_outcomes(session: Session, *, split: str, events: Sequence[str], since: datetime) -> int:
    """Outcome events (of these metrics, at or after `since`) whose unit was never exposed in the split.

    The sums ignore them; the results page shows the count (a unit-key mismatch between the
    service and the router shows up here first).
    """
    outcome, exposure = OutcomeEvent, ExposureEvent
    exposed = select(exposure.id).where(exposure.split == split, exposure.unit_id == outcome.unit_id)
    statement = select(func.count()).where(
        outcome.metric.in_(list(events)),
        outcome.ts >= literal(since, UTCDateTime()),
        ~exposed.exists(),
    )
    return int(session.scalar(statement) or 0)
