"""Sizing an experiment for the wizard: units per arm from the engine's power calculator, and
how long the endpoint's recent traffic takes to bring them.

The traffic rate is the distinct units per day in the endpoint's inference log over the last
week (requests without a unit id count as one unit each): the rate at which an experiment
on that endpoint would expose new units, an optimistic one since returning units are not
new. Nothing is written.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll.abtest.schemas import PlanRead, PlanRequest
from atoll.abtest.stats import PowerRequest, power
from atoll.abtest.stats.inputs import describe
from atoll.db import utcnow
from atoll.errors import InvalidInput
from atoll.events import InferenceEvent

LOOKBACK = timedelta(days=7)


def units_per_day(session: Session, endpoint: str, *, lookback: timedelta = LOOKBACK) -> float | None:
    """Distinct units per day seen by the endpoint lately; None with no traffic at all."""
    now = utcnow()
    since = now - lookback
    recent = (InferenceEvent.endpoint == endpoint) & (InferenceEvent.ts >= since)
    row = session.execute(
        select(
            func.count(InferenceEvent.unit_id.distinct()),
            func.count().filter(InferenceEvent.unit_id.is_(None)),
            func.min(InferenceEvent.ts),
        ).where(recent)
    ).one()
    units, anonymous, first = int(row[0] or 0), int(row[1] or 0), row[2]
    if first is None or units + anonymous == 0:
        return None
    days = max((now - first).total_seconds(), 3600.0) / 86_400  # at least an hour of history
    return (units + anonymous) / min(days, lookback.total_seconds() / 86_400)


def plan(session: Session, body: PlanRequest) -> PlanRead:
    try:
        request = PowerRequest(
            metric_type=body.metric_type,
            baseline=body.baseline,
            std=body.std,
            mde=body.mde,
            alpha=body.alpha,
            power=body.power,
            arms=body.arms,
            method=body.method,
        )
    except ValidationError as exc:
        message = describe(exc)
        raise InvalidInput(message, field=message.split(":", 1)[0]) from None
    result = power(request)
    rate = units_per_day(session, body.endpoint)
    days = result.n_total / rate if rate and result.n_total else None
    return PlanRead(power=result, units_per_day=rate, days=days)
