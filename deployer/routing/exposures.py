"""Exposure records: the first time this router process sends a unit somewhere under a split.

One row per (split, unit) per router process, through the event log's `BatchWriter` (a
background thread inserts batches; `record` only puts a dict on a queue, so the request
path never waits on the database, and a full queue drops and counts). The set of pairs
already written is a bounded LRU: a unit evicted from it and seen again is written again,
as is a unit another replica saw first; analyses take each unit's first exposure per
split, so duplicates change nothing.

A request that was retried on another deployment (its own was gone) writes no exposure:
the unit was not served where its assignment sends it, and its next request will be.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from atoll.db import make_session_factory, utcnow
from atoll.events import BatchWriter, ExposureEvent

DEFAULT_REMEMBERED = 200_000


class ExposureLog:
    def __init__(self, writer: BatchWriter | None, *, remembered: int = DEFAULT_REMEMBERED) -> None:
        self.writer = writer
        self.remembered = remembered
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    @classmethod
    def for_engine(cls, engine: Engine, **kwargs: int) -> ExposureLog:
        return cls(BatchWriter(make_session_factory(engine), ExposureEvent), **kwargs)

    def record(self, *, endpoint: str, split: str, deployment: str, unit: str) -> bool:
        """Queue an exposure unless this process already wrote this (split, unit); True if queued."""
        if self.writer is None:
            return False
        pair = (split, unit)
        if pair in self._seen:
            self._seen.move_to_end(pair)
            return False
        self._seen[pair] = None
        if len(self._seen) > self.remembered:
            self._seen.popitem(last=False)
        self.writer.submit(
            {"ts": utcnow(), "split": split, "deployment": deployment, "unit_id": unit, "endpoint": endpoint}
        )
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class ExposureCollector(Collector):
    """The writer's own counts on the router's `/metrics`."""

    def __init__(self, log: ExposureLog) -> None:
        self.log = log

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        writer = self.log.writer
        written, dropped, queued = (writer.written, writer.dropped, writer.depth) if writer else (0, 0, 0)
        yield CounterMetricFamily(
            "atoll_router_exposures_written", "Exposure rows inserted in the event log", value=written
        )
        yield CounterMetricFamily(
            "atoll_router_exposures_dropped",
            "Exposure rows dropped (queue full or the database refused the batch)",
            value=dropped,
        )
        yield GaugeMetricFamily(
            "atoll_router_exposures_queued", "Exposure rows waiting to be written", value=queued
        )
