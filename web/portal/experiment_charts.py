"""Geometry of the experiment page's time charts (server-rendered SVG, like ``charts.forest``).

One shape serves both: the cumulative relative lift of each treatment arm over time with its
interval as a band (from the readout snapshots), and each arm's share of traffic over time
(from the adaptive allocation history). Pure: points in, pixel paths out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from atoll.web.portal.charts import format_value, nice_ticks

#: (when, value, interval lower, interval upper); None where undefined.
Point = tuple[datetime, float | None, float | None, float | None]
TONES = ("a", "b", "c", "d", "e", "f")


@dataclass(frozen=True)
class Series:
    label: str
    tone: str  # a CSS class suffix
    line: str  # SVG path of the values ("" with fewer than one point)
    band: str  # SVG path of the interval band ("" when there is none)
    last_y: float | None
    title: str


@dataclass(frozen=True)
class AxisTick:
    at: float  # pixel position along its axis
    label: str


@dataclass(frozen=True)
class LinePlot:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    zero_y: float | None
    y_ticks: list[AxisTick]
    x_ticks: list[AxisTick]
    series: list[Series]
    axis_label: str


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def line_plot(
    data: Mapping[str, Sequence[Point]],
    *,
    axis_label: str,
    percent: bool = False,
    width: int = 640,
    height: int = 220,
    include_zero: bool = True,
) -> LinePlot:
    """Place each series on shared axes: time across, value up (zero shown when asked)."""
    left, right, top, bottom = 56.0, float(width) - 16.0, 12.0, float(height) - 40.0
    times = [p[0].timestamp() for points in data.values() for p in points]
    values = [
        v for points in data.values() for p in points for v in p[1:] if v is not None and math.isfinite(v)
    ]
    if include_zero:
        values.append(0.0)
    ticks = nice_ticks(min(values), max(values)) if values else [0.0, 1.0]
    lo, hi = ticks[0], ticks[-1]
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    span = (t1 - t0) or 1.0

    def x_of(ts: datetime) -> float:
        return round(left + (ts.timestamp() - t0) / span * (right - left), 2)

    def y_of(value: float) -> float:
        return round(bottom - (value - lo) / ((hi - lo) or 1.0) * (bottom - top), 2)

    series = []
    for i, (label, points) in enumerate(data.items()):
        drawn = [(x_of(t), y_of(v)) for t, v, _, _ in points if v is not None and math.isfinite(v)]
        banded = [
            (x_of(t), y_of(lo_), y_of(hi_))
            for t, _, lo_, hi_ in points
            if lo_ is not None and hi_ is not None and math.isfinite(lo_ + hi_)
        ]
        line = " ".join(f"{'M' if j == 0 else 'L'}{x},{y}" for j, (x, y) in enumerate(drawn))
        band = ""
        if len(banded) > 1:
            upper = [f"{x},{y_hi}" for x, _, y_hi in banded]
            lower = [f"{x},{y_lo}" for x, y_lo, _ in reversed(banded)]
            band = "M" + " L".join(upper + lower) + " Z"
        last = next((p for p in reversed(points) if _finite(p[1])), None)
        title = label
        if last is not None:
            title += (
                f": {format_value(last[1], percent=percent, signed=True)} at {last[0]:%Y-%m-%d %H:%M} UTC"
            )
        series.append(
            Series(label, TONES[i % len(TONES)], line, band, drawn[-1][1] if drawn else None, title)
        )
    y_step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(y_step) + 1e-9)) if y_step < 1 else 0
    y_ticks = [AxisTick(y_of(t), f"{t:.{decimals}f}{'%' if percent else ''}") for t in ticks]
    x_ticks = []
    if times:
        for k in range(4):
            ts = datetime.fromtimestamp(t0 + span * k / 3, tz=next(iter(data.values()))[0][0].tzinfo)
            x_ticks.append(AxisTick(x_of(ts), f"{ts:%m-%d %H:%M}"))
    return LinePlot(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        zero_y=y_of(0.0) if lo <= 0.0 <= hi else None,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        series=series,
        axis_label=axis_label,
    )
