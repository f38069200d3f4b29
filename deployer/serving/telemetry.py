"""Prometheus metrics (a registry of the server's own) and the inference event log.

Event log: one `inference_events` row per request, written by `atoll.events.BatchWriter`
(a background thread, batched inserts; a full buffer or a database outage drops rows and
counts them, never slowing or failing a prediction). What a row holds:

- endpoint, deployment, model name/version, backend, request id, latency (ms), status;
- `unit_id`: the unit key the router used for the request (`X-Atoll-Unit`, which the router
  sets from the endpoint's unit header or body field; a direct caller may send it too), so
  outcome events can label the prediction (monitoring/labels.py);
- `features`: one row of the request as `{column: value}` (columns `f0..` when the build
  has no names). A one-row request, the common case, is logged whole; of a multi-row
  request one row is sampled uniformly at random, so drift statistics over the log stay
  unbiased without writing megabytes per call;
- `prediction`: `{"value": <the sampled row's label>, "rows": <rows in the request>}`
  (plus `"proba"`, the row's class probabilities, when the model has them).
Failed requests are logged with their status and no features.
"""

from __future__ import annotations

import logging
import random
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from atoll.db import utcnow

if TYPE_CHECKING:
    import numpy.typing as npt

    from atoll.events import BatchWriter

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class _EventLogCollector:
    """Reads the writer's counters at scrape time (they live on the writer thread)."""

    def __init__(self, events: EventLog) -> None:
        self._events = events

    def collect(self) -> Iterable[Any]:
        writer = self._events.writer
        dropped = CounterMetricFamily(
            "atoll_serve_event_log_dropped", "Inference events dropped (buffer full or database down)"
        )
        written = CounterMetricFamily("atoll_serve_event_log_written", "Inference events written")
        batches = CounterMetricFamily("atoll_serve_event_log_batches", "Batched inserts into the event log")
        depth = GaugeMetricFamily("atoll_serve_event_log_buffered", "Inference events waiting to be written")
        dropped.add_metric([], float((writer.dropped if writer else 0) + self._events.dropped_here))
        written.add_metric([], float(writer.written if writer else 0))
        batches.add_metric([], float(writer.batches if writer else 0))
        depth.add_metric([], float(writer.depth if writer else 0))
        yield from (dropped, written, batches, depth)


class _Histogram:
    """Bucket counts and a sum, as Prometheus reads them; no lock (see `Metrics`)."""

    __slots__ = ("bounds", "counts", "edges", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.edges = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le semantics: value <= bound
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        return list(zip(self.edges, accumulate(float(c) for c in self.counts), strict=True))


class Metrics:
    """The server's Prometheus metrics, read at scrape time by a collector.

    Every update happens on the event-loop thread (the request path, the batcher's
    bookkeeping and the scrape all run there), so plain counters need no lock.
    prometheus_client's metric objects take a lock on each update: the eight updates of a
    prediction measured 7.7 us with them and 1.2 us here (timeit, warm). Names, labels
    and buckets are unchanged.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency: dict[str, _Histogram] = {}
        self.requests: dict[tuple[str, int], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.batch_rows = _Histogram(_BATCH_BUCKETS)
        self.batch_requests = _Histogram(_BATCH_BUCKETS)
        self.batch_seconds = _Histogram(_LATENCY_BUCKETS)
        self.queue_depth = 0
        self.in_flight = 0
        self.ready = False
        self.registry.register(_MetricsCollector(self))

    def observe(self, route: str, status: int, seconds: float) -> None:
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = _Histogram(_LATENCY_BUCKETS)
        histogram.observe(seconds)
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def error(self, route: str, kind: str) -> None:
        key = (route, kind)
        self.errors[key] = self.errors.get(key, 0) + 1

    def on_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth = depth

    def watch_event_log(self, events: EventLog) -> None:
        self.registry.register(_EventLogCollector(events))


class _MetricsCollector:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Any]:
        return []  # names are fixed; nothing to check against other collectors

    def collect(self) -> Iterable[Any]:
        m = self._metrics
        latency = HistogramMetricFamily(
            "atoll_serve_request_duration_seconds", "Request latency", labels=["route"]
        )
        for route, histogram in sorted(m.latency.items()):
            latency.add_metric([route], histogram.cumulative(), histogram.sum)
        requests = CounterMetricFamily(
            "atoll_serve_requests", "Requests by route and status", labels=["route", "status"]
        )
        for (route, status), count in sorted(m.requests.items()):
            requests.add_metric([route, str(status)], float(count))
        errors = CounterMetricFamily(
            "atoll_serve_errors", "Failed predictions by kind", labels=["route", "kind"]
        )
        for (route, kind), count in sorted(m.errors.items()):
            errors.add_metric([route, kind], float(count))
        yield from (latency, requests, errors)
        for name, doc, histogram in (
            ("atoll_serve_batch_rows", "Rows per ONNX Runtime call", m.batch_rows),
            ("atoll_serve_batch_requests", "Requests merged per ONNX Runtime call", m.batch_requests),
            ("atoll_serve_batch_duration_seconds", "ONNX Runtime call time", m.batch_seconds),
        ):
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], histogram.cumulative(), histogram.sum)
            yield family
        for name, doc, value in (
            ("atoll_serve_queue_depth", "Requests waiting for a batch", m.queue_depth),
            ("atoll_serve_requests_in_flight", "Requests being handled", m.in_flight),
            ("atoll_serve_model_ready", "1 when the model is loaded and serving", int(m.ready)),
        ):
            yield GaugeMetricFamily(name, doc, value=float(value))


class EventLog:
    """Builds inference rows and hands them to the batch writer (or counts them lost)."""

    def __init__(
        self,
        writer: BatchWriter | None,
        *,
        endpoint: str,
        deployment: str | None,
        model_name: str,
        model_version: str,
        backend: str,
        columns: list[str] | None,
    ) -> None:
        self.writer = writer
        self.dropped_here = 0  # rows lost before reaching a writer (none could be started)
        self._base = {
            "endpoint": endpoint,
            "deployment": deployment,
            "model_name": model_name,
            "model_version": model_version,
            "backend": backend,
        }
        self._columns = columns
        self._random = random.Random()
        self._pending: list[dict[str, Any]] = []

    # Events are handed to the writer in bursts (every `FLUSH_SECONDS` or `BURST` events), not
    # one by one: the writer inserts whatever is queued when it wakes, so a steady trickle of
    # requests would otherwise become one small INSERT (and its GIL time) per request.
    BURST = 256
    FLUSH_SECONDS = 0.1
    MAX_PENDING = 50_000

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if self.writer is None:
            self.dropped_here += len(pending)
            return
        submit = self.writer.submit
        for event in pending:
            submit(event)

    def set_columns(self, columns: list[str] | None) -> None:
        self._columns = columns

    def record(
        self,
        *,
        request_id: str,
        status: int,
        latency_ms: float,
        unit_id: str | None = None,
        rows: npt.NDArray[Any] | None = None,
        outputs: dict[str, npt.NDArray[Any]] | None = None,
        label_output: str | None = None,
        proba_output: str | None = None,
    ) -> None:
        event: dict[str, Any] = {
            **self._base,
            "ts": utcnow(),
            "request_id": request_id,
            "unit_id": unit_id,
            "latency_ms": latency_ms,
            "status": status,
            "features": None,
            "prediction": None,
        }
        try:
            if rows is not None and outputs is not None and len(rows):
                n = len(rows)
                i = 0 if n == 1 else self._random.randrange(n)
                values = rows[i].tolist()
                names = self._columns or [f"f{j}" for j in range(len(values))]
                event["features"] = dict(zip(names, values, strict=False))
                prediction: dict[str, Any] = {"rows": n}
                if label_output is not None and label_output in outputs:
                    prediction["value"] = _item(outputs[label_output][i])
                if proba_output is not None and proba_output in outputs:
                    prediction["proba"] = _item(outputs[proba_output][i])
                event["prediction"] = prediction
        except Exception as exc:  # a summary problem must not fail the prediction
            log.debug("event summary failed", extra={"error": str(exc)})
        if len(self._pending) >= self.MAX_PENDING:
            self.dropped_here += 1
            return
        self._pending.append(event)
        if len(self._pending) >= self.BURST:
            self.flush()

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


def _item(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value
