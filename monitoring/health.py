"""Serving health per deployment and backend over time buckets, from the inference log.

Counts, error counts and mean latency are aggregate SQL (`GROUP BY deployment, backend,
bucket`). Percentiles are not portable SQL (SQLite has no `percentile_cont`), so p50/p95/
p99 come from the latency column alone, fetched for the bounded window; past
`MAX_LATENCY_ROWS` rows a systematic sample (`id % k = 0`) is fetched instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from atoll.events import InferenceEvent

MAX_LATENCY_ROWS = 200_000
MAX_BUCKETS = 500


class HealthPoint(BaseModel):
    bucket_start: datetime
    requests: int
    errors: int  # status >= 500
    client_errors: int  # 4xx
    error_rate: float
    throughput_rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class HealthSeries(BaseModel):
    deployment: str | None
    backend: str | None
    points: list[HealthPoint]


def _bucket(session: Session, start: datetime, seconds: int) -> ColumnElement[int]:
    """The bucket index of each row's `ts`, in the database's own dialect."""
    ts = InferenceEvent.ts
    if session.get_bind().dialect.name == "sqlite":
        epoch = cast(func.strftime("%s", ts), Integer)
        return cast((epoch - int(start.timestamp())) / seconds, Integer)
    offset = func.extract("epoch", ts) - start.timestamp()
    return cast(func.floor(offset / seconds), Integer)


def serving_health(
    session: Session, *, endpoint: str, start: datetime, end: datetime, bucket_seconds: int
) -> list[HealthSeries]:
    bucket_seconds = max(bucket_seconds, math.ceil((end - start).total_seconds() / MAX_BUCKETS), 1)
    bucket = _bucket(session, start, bucket_seconds).label("bucket")
    in_window = (InferenceEvent.endpoint == endpoint, InferenceEvent.ts >= start, InferenceEvent.ts < end)
    keys = (InferenceEvent.deployment, InferenceEvent.backend, bucket)
    counts = session.execute(
        select(
            *keys,
            func.count().label("requests"),
            func.sum(case((InferenceEvent.status >= 500, 1), else_=0)).label("errors"),
            func.sum(case(((InferenceEvent.status >= 400) & (InferenceEvent.status < 500), 1), else_=0)),
        )
        .where(*in_window)
        .group_by(*keys)
    ).all()
    total = sum(row[3] for row in counts)
    latency_query = select(*keys, InferenceEvent.latency_ms).where(
        *in_window, InferenceEvent.latency_ms.is_not(None)
    )
    if total > MAX_LATENCY_ROWS:
        latency_query = latency_query.where(InferenceEvent.id % math.ceil(total / MAX_LATENCY_ROWS) == 0)
    latencies: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for deployment, backend, index, latency in session.execute(latency_query):
        if latency is not None:
            latencies[(deployment, backend, index)].append(latency)
    series: dict[tuple[Any, Any], list[HealthPoint]] = defaultdict(list)
    for deployment, backend, index, requests, errors, client_errors in sorted(
        counts, key=lambda r: (r[0] or "", r[1] or "", r[2])
    ):
        values = np.asarray(latencies.get((deployment, backend, index), []), dtype=float)
        p50, p95, p99 = (
            (float(v) for v in np.percentile(values, [50, 95, 99])) if len(values) else (None, None, None)
        )
        series[(deployment, backend)].append(
            HealthPoint(
                bucket_start=(start + timedelta(seconds=int(index) * bucket_seconds)).astimezone(UTC),
                requests=requests,
                errors=int(errors or 0),
                client_errors=int(client_errors or 0),
                error_rate=float(errors or 0) / requests,
                throughput_rps=requests / bucket_seconds,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
            )
        )
    return [HealthSeries(deployment=d, backend=b, points=p) for (d, b), p in series.items()]
