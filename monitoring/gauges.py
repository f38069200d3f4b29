"""Prometheus gauges of drift, computed from the latest checked window of each monitor at scrape time.

- `atoll_drift_share{monitor,endpoint,deployment,arm,backend}`: the drifted share of columns
  under the monitor's alert rule (labels empty on the all-traffic row);
- `atoll_drift_column{monitor,endpoint,deployment,arm,backend,column,method}`: the column's
  score (a p-value or a distance, see `score_type`);
- `atoll_drift_column_drifted{...same...}`: 1 when that column drifted (Evidently's verdict);
- `atoll_model_quality{monitor,endpoint,deployment,arm,backend,metric}`: model quality of the
  window's labelled rows (accuracy, f1, mae, ...; `label_coverage` is labelled / rows), for
  monitors with labels; a row with "not enough labels" reports only its coverage.

`monitor` is a label too: two monitors may watch the same endpoint with different specs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.monitoring.models import Monitor, MonitorColumnResult, MonitorRun

GROUP_LABELS = ["monitor", "endpoint", "deployment", "arm", "backend"]


def latest_runs(session: Session) -> list[tuple[Monitor, MonitorRun]]:
    """Every run row (all traffic and groups) of each monitor's latest succeeded window."""
    latest = (
        select(MonitorRun.monitor_id, func.max(MonitorRun.window_end).label("window_end"))
        .where(MonitorRun.state == "succeeded", MonitorRun.group_key == "all")
        .group_by(MonitorRun.monitor_id)
        .subquery()
    )
    rows = session.execute(
        select(Monitor, MonitorRun)
        .join(MonitorRun, MonitorRun.monitor_id == Monitor.id)
        .join(
            latest,
            (latest.c.monitor_id == MonitorRun.monitor_id) & (latest.c.window_end == MonitorRun.window_end),
        )
        .where(MonitorRun.status.is_not(None))
        .order_by(Monitor.name, MonitorRun.group_key)
    ).all()
    return [(m, r) for m, r in rows]


class DriftCollector:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        share = GaugeMetricFamily(
            "atoll_drift_share", "Drifted share of columns, latest window", labels=GROUP_LABELS
        )
        column_labels = [*GROUP_LABELS, "column", "method", "score_type"]
        score = GaugeMetricFamily(
            "atoll_drift_column",
            "Drift score of a column (p-value or distance), latest window",
            labels=column_labels,
        )
        drifted = GaugeMetricFamily(
            "atoll_drift_column_drifted", "1 when the column drifted, latest window", labels=column_labels
        )
        with self._factory() as session:
            runs = latest_runs(session)
            by_run = {r.id: (m, r) for m, r in runs}
            columns = session.scalars(
                select(MonitorColumnResult).where(MonitorColumnResult.run_id.in_(list(by_run)))
            ).all()
        for monitor, run in runs:
            share.add_metric(_labels(monitor, run), float(run.drift_share or 0.0))
        for column in columns:
            monitor, run = by_run[column.run_id]
            labels = [*_labels(monitor, run), column.column, column.method or "", column.score_type or ""]
            if column.score is not None:
                score.add_metric(labels, column.score)
            if column.drifted is not None:
                drifted.add_metric(labels, float(column.drifted))
        quality = GaugeMetricFamily(
            "atoll_model_quality",
            "Model quality of labelled predictions (and label_coverage), latest window",
            labels=[*GROUP_LABELS, "metric"],
        )
        for monitor, run in runs:
            for metric, value in quality_values(run.quality):
                quality.add_metric([*_labels(monitor, run), metric], value)
        yield from (share, score, drifted, quality)


def quality_values(quality: dict[str, Any] | None) -> list[tuple[str, float]]:
    """(metric, value) of a run row's stored quality that have a value, with its label coverage."""
    if not quality:
        return []
    found = [(name, float(v)) for name, v in sorted(quality.get("current", {}).items()) if v is not None]
    if quality.get("coverage") is not None:
        found.append(("label_coverage", float(quality["coverage"])))
    return found


def _labels(monitor: Monitor, run: MonitorRun) -> list[str]:
    return [monitor.name, monitor.endpoint, run.deployment or "", run.arm or "", run.backend or ""]
