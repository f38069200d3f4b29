"""The monitor page's model-quality views: the quality timeline (one metric per window, the
reference's value as the line) and the per-group table (current vs reference, drop).

Pure functions over the run rows' stored quality (`QualityRead` as JSON); the timeline has
the drift timeline's geometry (`drift_charts.Timeline`), so one SVG macro draws both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from atoll.monitoring.models import MonitorRun
from atoll.monitoring.quality_schemas import LOWER_IS_BETTER, LabelSpec
from atoll.web.portal.charts import nice_ticks
from atoll.web.portal.drift_charts import Mark, Timeline, layout

#: The metric the timeline follows, per task.
HEADLINE = {"classification": "accuracy", "regression": "mae"}


@dataclass(frozen=True)
class QualityRow:
    """One line of the quality table: a metric of one run row, current beside reference."""

    metric: str
    current: float | None
    reference: float | None
    drop: float | None
    max_drop: float | None
    breached: bool
    lower_is_better: bool


def limits(labels: LabelSpec) -> dict[str, float]:
    return {str(metric): value for metric, value in labels.max_drop.items()}


def table_rows(quality: dict[str, Any] | None, labels: LabelSpec) -> list[QualityRow]:
    """The metrics of the task that have a value on either side (no AUC without a score)."""
    if not quality or not quality.get("current"):
        return []
    reference = quality.get("reference") or {}
    drops = quality.get("drop") or {}
    return [
        QualityRow(
            metric=metric,
            current=quality["current"].get(metric),
            reference=reference.get(metric),
            drop=drops.get(metric),
            max_drop=limits(labels).get(metric),
            breached=metric in quality.get("breached", []),
            lower_is_better=metric in LOWER_IS_BETTER,
        )
        for metric in labels.metrics
        if quality["current"].get(metric) is not None or reference.get(metric) is not None
    ]


def timeline(
    runs: Sequence[MonitorRun], labels: LabelSpec, *, width: int = 720, height: int = 180
) -> Timeline | None:
    """The headline metric per window (oldest left); the line is the reference's value, or the
    value that breaches (`reference -/+ max_drop`) when a max_drop is set for the metric."""
    metric = HEADLINE[labels.task]
    ordered = sorted((r for r in runs if r.quality), key=lambda r: r.window_end)
    if not ordered:
        return None
    values = [(r, (r.quality or {}).get("current", {}).get(metric)) for r in ordered]
    reference = next(((r.quality or {}).get("reference") or {} for r in reversed(ordered)), {}).get(metric)
    limit = limits(labels).get(metric)
    line_at = reference
    if reference is not None and limit is not None:
        line_at = reference + limit if metric in LOWER_IS_BETTER else reference - limit
    known = [v for _, v in values if v is not None] + ([line_at] if line_at is not None else [])
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    marks = []
    for run, value in values:
        status = (run.quality or {}).get("status")
        tone = "drift" if status == "breach" else "ok" if value is not None else "none"
        shown = f"{metric} {value:.4g}" if value is not None else (run.quality or {}).get("message") or status
        title = f"{run.window_end:%Y-%m-%d %H:%M} UTC: {shown}"
        marks.append(Mark(run.window_end, value, tone, title, run.id))
    return layout(
        marks, ticks=nice_ticks(lo, hi, 4), tick_format=".3g", line_at=line_at, width=width, height=height
    )
