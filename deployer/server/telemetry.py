"""Prometheus metrics (a registry of the server's own) and the inference event log.

Event log: one `inference_events` row per request, written by `atoll.events.BatchWriter`
(a background thread, batched inserts; a full buffer or a database outage drops rows and
counts them, never slowing or failing a prediction). What a row holds:

- endpoint, deployment, model name/version, backend, request id, latency (ms), status;
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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "atoll_serve_request_duration_seconds",
            "Request latency",
            ["route"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.requests = Counter(
            "atoll_serve_requests", "Requests by route and status", ["route", "status"], registry=r
        )
        self.errors = Counter(
            "atoll_serve_errors", "Failed predictions by kind", ["route", "kind"], registry=r
        )
        self.batch_rows = Histogram(
            "atoll_serve_batch_rows", "Rows per ONNX Runtime call", registry=r, buckets=_BATCH_BUCKETS
        )
        self.batch_requests = Histogram(
            "atoll_serve_batch_requests",
            "Requests merged per ONNX Runtime call",
            registry=r,
            buckets=_BATCH_BUCKETS,
        )
        self.batch_seconds = Histogram(
            "atoll_serve_batch_duration_seconds",
            "ONNX Runtime call time",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.queue_depth = Gauge("atoll_serve_queue_depth", "Requests waiting for a batch", registry=r)
        self.in_flight = Gauge("atoll_serve_requests_in_flight", "Requests being handled", registry=r)
        self.ready = Gauge("atoll_serve_model_ready", "1 when the model is loaded and serving", registry=r)
        self._latency_children: dict[str, Any] = {}
        self._request_children: dict[tuple[str, int], Any] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        child = self._latency_children.get(route)
        if child is None:
            child = self._latency_children[route] = self.latency.labels(route)
        child.observe(seconds)
        key = (route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, str(status))
        counter.inc()

    def on_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def watch_event_log(self, events: EventLog) -> None:
        self.registry.register(_EventLogCollector(events))


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
        rows: npt.NDArray[Any] | None = None,
        outputs: dict[str, npt.NDArray[Any]] | None = None,
        label_output: str | None = None,
        proba_output: str | None = None,
    ) -> None:
        event: dict[str, Any] = {
            **self._base,
            "ts": utcnow(),
            "request_id": request_id,
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
