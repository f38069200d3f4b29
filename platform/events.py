"""The event log: inference, exposure and outcome events, append-only.

The model server and the router write here; monitoring and abtest read it with aggregate
SQL. Writers never block the request path: `BatchWriter` buffers rows and inserts them in
batches from a background thread, and when the buffer is full it drops and counts.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import JSON, Float, Index, String, Table, bindparam, insert, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from atoll.db import Base, UTCDateTime, unit_of_work, utcnow

log = logging.getLogger(__name__)

#: The header in which the router hands the model server the unit key its split used (from
#: whichever header or body field the endpoint names); the model server logs it as the
#: inference row's `unit_id`, where outcome events find their predictions (monitor labels).
UNIT_HEADER = b"x-atoll-unit"


class InferenceEvent(Base):
    __tablename__ = "inference_events"
    __table_args__ = (Index("ix_inference_events_endpoint_ts", "endpoint", "ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    endpoint: Mapped[str] = mapped_column(String(128))
    deployment: Mapped[str | None] = mapped_column(String(128))
    model_name: Mapped[str | None] = mapped_column(String(255))
    model_version: Mapped[str | None] = mapped_column(String(32))
    backend: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    unit_id: Mapped[str | None] = mapped_column(String(128))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[int] = mapped_column(default=200)
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prediction: Mapped[Any | None] = mapped_column(JSON)


class ExposureEvent(Base):
    """A unit first sent to a deployment under a split (the router writes one per unit and split).

    `split` is the split's salt: an experiment's own salt, or the endpoint's. Analyses take a
    unit's first exposure per split, so a duplicate from a second router replica is harmless.
    """

    __tablename__ = "exposure_events"
    # Covering index for the experiment sums (abtest/sums.py; migration 0009).
    __table_args__ = (
        Index(
            "ix_exposure_events_split_unit_ts",
            "split",
            "unit_id",
            "ts",
            "id",
            postgresql_include=["deployment"],
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    split: Mapped[str] = mapped_column(String(64))
    deployment: Mapped[str] = mapped_column(String(63))
    unit_id: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(63))


class OutcomeEvent(Base):
    __tablename__ = "outcome_events"
    # Covering index for the experiment sums (abtest/sums.py; migration 0009).
    __table_args__ = (
        Index("ix_outcome_events_metric_unit_ts", "metric", "unit_id", "ts", postgresql_include=["value"]),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    unit_id: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    experiment: Mapped[str | None] = mapped_column(String(128))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


# One statement per batch on PostgreSQL: the batch travels as ONE JSON parameter (orjson
# encodes it in C; psycopg's array adapters cost ~14 ms per 1,000-element column in
# Python), PostgreSQL unpacks it with json_to_recordset, the unique index on event_id drops
# resends, and the plan is cached: no per-row SQL compilation, one round trip.
_INSERT_OUTCOMES_POSTGRES = text(
    """
    WITH inserted AS (
        INSERT INTO outcome_events (event_id, ts, unit_id, metric, value, experiment, received_at)
        SELECT event_id, COALESCE(ts, :received_at), unit_id, metric, COALESCE(value, 1.0),
               experiment, :received_at
        FROM json_to_recordset(CAST(:batch AS json)) AS batch (
            event_id varchar, ts timestamptz, unit_id varchar, metric varchar, value float8,
            experiment varchar
        )
        ON CONFLICT (event_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
    """
).bindparams(bindparam("received_at", type_=UTCDateTime()))


def ingest_outcomes(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert outcome events, skipping event ids already stored. Returns how many were new.

    Idempotent: a client may resend a batch after a timeout without double counting; an
    event id repeated within the batch counts once (the first one). Each row has
    `event_id`, `unit_id`, `metric` and optionally `value` (default 1.0), `ts` (an aware
    datetime, default now) and `experiment`. No pre-check SELECT: the insert itself skips
    conflicts (ON CONFLICT DO NOTHING) and counts what it wrote, which is also right when
    two resends race.
    """
    if not rows:
        return 0
    now = utcnow()
    for row in rows:
        if isinstance(row.get("ts"), datetime) and row["ts"].tzinfo is None:
            raise ValueError("ts: naive datetime given; use an aware one (UTC)")
    if session.get_bind().dialect.name == "postgresql":
        batch = orjson.dumps(list(rows)).decode()
        inserted = session.execute(_INSERT_OUTCOMES_POSTGRES, {"batch": batch, "received_at": now})
        return int(inserted.scalar_one())
    complete = [
        {
            "event_id": row["event_id"],
            "ts": row.get("ts") or now,
            "unit_id": row["unit_id"],
            "metric": row["metric"],
            "value": row.get("value", 1.0),
            "experiment": row.get("experiment"),
            "received_at": now,
        }
        for row in rows
    ]
    table = cast(Table, OutcomeEvent.__table__)
    statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=["event_id"])
    return len(session.execute(statement.returning(table.c.event_id), complete).all())


class BatchWriter:
    """Buffers event rows and inserts them in batches from one background thread.

    `submit` never blocks and never raises: a full buffer or a database outage drops rows
    and counts them in `dropped`, so logging can never slow or fail a prediction.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        model: type[Base],
        *,
        max_batch: int = 500,
        flush_seconds: float = 0.5,
        capacity: int = 50_000,
    ) -> None:
        self._factory = factory
        self._table = cast(Table, model.__table__)
        self._max_batch = max_batch
        self._flush_seconds = flush_seconds
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"batch-{model.__tablename__}", daemon=True)
        self.written = 0
        self.dropped = 0
        self.batches = 0
        self._thread.start()

    def submit(self, row: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is buffered and stop the thread."""
        self._stopping.set()
        self._thread.join(timeout)

    def _take_batch(self) -> list[dict[str, Any]]:
        try:
            batch = [self._queue.get(timeout=self._flush_seconds)]
        except queue.Empty:
            return []
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            batch = self._take_batch()
            if batch:
                self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            with unit_of_work(self._factory) as session:
                session.execute(insert(self._table), batch)
            self.written += len(batch)
            self.batches += 1
        except Exception as exc:
            self.dropped += len(batch)
            log.warning(
                "event batch dropped",
                extra={"table": self._table.name, "rows": len(batch), "error": str(exc)},
            )
