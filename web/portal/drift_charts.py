"""Geometry of the monitor page's SVG charts: the drift timeline and the small per-feature
histograms (reference vs window). Pure functions, like `charts.py` (whose ticks they reuse);
the templates only draw what they get (`templates/monitoring/_charts.html`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from atoll.web.portal.charts import nice_ticks


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    share: float | None  # None: no verdict (no data, failed)
    state: str
    status: str | None
    run_id: int


@dataclass(frozen=True)
class PlacedPoint:
    x: float
    y: float | None
    tone: str  # ok | drift | none
    title: str
    run_id: int


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    threshold_y: float
    ticks: list[tuple[float, str]]  # (y, label)
    points: list[PlacedPoint]
    line: str  # the polyline through the points that have a share
    first: str
    last: str


@dataclass(frozen=True)
class Mark:
    """One run on a timeline before layout: its value (None: nothing to plot) and how it reads."""

    at: datetime
    value: float | None
    tone: str  # ok | drift | none
    title: str
    run_id: int


def layout(
    marks: Sequence[Mark],
    *,
    ticks: Sequence[float],
    tick_format: str,
    line_at: float | None,
    width: int,
    height: int,
) -> Timeline:
    """Marks over time (oldest left) on a y axis from the first to the last tick, with a
    horizontal line at `line_at` (a threshold). The drift and quality timelines share it."""
    left, right, top, bottom = 44.0, float(width) - 12.0, 10.0, float(height) - 26.0
    ordered = sorted(marks, key=lambda m: m.at)
    start = ordered[0].at.timestamp() if ordered else 0.0
    span = ((ordered[-1].at.timestamp() - start) if ordered else 0.0) or 1.0
    lo, hi = (ticks[0], ticks[-1]) if ticks else (0.0, 1.0)

    def x_of(at: datetime) -> float:
        if len(ordered) == 1:
            return (left + right) / 2
        return left + (at.timestamp() - start) / span * (right - left)

    def y_of(value: float) -> float:
        return bottom - (value - lo) / ((hi - lo) or 1.0) * (bottom - top)

    placed = [
        PlacedPoint(x_of(m.at), None if m.value is None else y_of(m.value), m.tone, m.title, m.run_id)
        for m in ordered
    ]
    return Timeline(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        threshold_y=y_of(line_at) if line_at is not None else bottom,
        ticks=[(y_of(v), format(v, tick_format)) for v in ticks],
        points=placed,
        line=" ".join(f"{p.x:.1f},{p.y:.1f}" for p in placed if p.y is not None),
        first=f"{ordered[0].at:%m-%d %H:%M}" if ordered else "",
        last=f"{ordered[-1].at:%m-%d %H:%M}" if ordered else "",
    )


def timeline(
    points: Sequence[TimelinePoint], *, threshold: float, width: int = 720, height: int = 180
) -> Timeline:
    """Drifted share per window over time (oldest left), with the drift-share threshold line."""
    marks = [
        Mark(
            p.at,
            p.share,
            p.status if p.status in ("ok", "drift") else "none",
            f"{p.at:%Y-%m-%d %H:%M} UTC: {p.state}, "
            + ("no verdict" if p.share is None else f"{p.share:.0%} drifted"),
            p.run_id,
        )
        for p in points
    ]
    ticks = [v for v in nice_ticks(0.0, 1.0, 4) if 0.0 <= v <= 1.0]
    return layout(marks, ticks=ticks, tick_format=".0%", line_at=threshold, width=width, height=height)


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    reference_y: float
    reference_height: float
    current_y: float
    current_height: float
    title: str


def histogram_bars(histogram: dict[str, Any] | None, *, width: int = 160, height: int = 40) -> list[Bar]:
    """Paired bars per bin: the reference share and the window's, on one shared scale."""
    if not histogram or not histogram.get("labels"):
        return []
    labels, reference, current = histogram["labels"], histogram["reference"], histogram["current"]
    peak = max([*reference, *current, 1e-9])
    slot = width / len(labels)
    bars = []
    for i, label in enumerate(labels):
        ref_h, cur_h = reference[i] / peak * height, current[i] / peak * height
        bars.append(
            Bar(
                x=i * slot,
                width=max(slot / 2 - 1, 1.0),
                reference_y=height - ref_h,
                reference_height=ref_h,
                current_y=height - cur_h,
                current_height=cur_h,
                title=f"{label}: reference {reference[i]:.1%}, window {current[i]:.1%}",
            )
        )
    return bars
