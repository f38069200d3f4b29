"""Serving metrics per arm from the inference log: latency and error rate, for guardrails.

The model server logs every request with its endpoint and deployment; an arm's serving
metric is over the requests its deployment served on the experiment's endpoint since the
start (and up to `until`). Here the unit is the **request**, not the experiment's unit: the
engine then treats requests as independent, which understates the variance when one unit
sends many requests (the usual caveat of request-level guardrails; read them as a guard
against a broken or slow model, not as a fine measurement). One aggregate statement per
metric, as for the outcome metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, SQLColumnExpression, case, func, literal, select
from sqlalchemy.orm import Session

from atoll.abtest.stats.schemas import ArmData
from atoll.db import UTCDateTime
from atoll.events import InferenceEvent

ServingMetric = Literal["latency_ms", "error_rate"]
#: The engine's metric type of each serving metric.
SERVING_TYPES: dict[str, Literal["binary", "mean"]] = {"latency_ms": "mean", "error_rate": "binary"}
SERVER_ERROR = 500


def serving_sums(
    session: Session,
    *,
    endpoint: str,
    arms: Sequence[str],
    metric: ServingMetric,
    since: datetime,
    until: datetime | None = None,
) -> dict[str, ArmData]:
    """Per arm: requests, Σ value, Σ value² (latency in ms; error = status >= 500)."""
    event = InferenceEvent
    where: list[ColumnElement[bool]] = [
        event.endpoint == endpoint,
        event.deployment.in_(list(arms)),
        event.ts >= literal(since, UTCDateTime()),
    ]
    if until is not None:
        where.append(event.ts <= literal(until, UTCDateTime()))
    value: SQLColumnExpression[Any]
    if metric == "latency_ms":
        value = event.latency_ms
        where.append(event.latency_ms.is_not(None))
    else:
        value = case((event.status >= SERVER_ERROR, 1.0), else_=0.0)
    statement = (
        select(event.deployment, func.count(), func.sum(value), func.sum(value * value))
        .where(*where)
        .group_by(event.deployment)
    )
    found = {row[0]: tuple(row) for row in session.execute(statement)}
    sums = {}
    for arm in arms:
        _, n, total, squares = found.get(arm, (arm, 0, 0.0, 0.0))
        sums[arm] = ArmData(n=int(n), sum=float(total or 0.0), sum_squares=float(squares or 0.0))
    return sums
