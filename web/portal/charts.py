"""Geometry of the portal's server-rendered SVG charts (no JavaScript chart library).

Pure functions: they place things in a pixel box; the templates only draw what they get.
The one chart so far is a horizontal forest plot of lifts with their confidence intervals
(one row per treatment arm, a zero line, an optional margin line), see
``templates/stats/_forest.html``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from atoll.abtest.stats import MetricResult

VERDICT_LABELS = {
    "ship": "Ship",
    "dont_ship": "Don't ship",
    "keep_running": "Keep running",
    "invalid": "Invalid",
}


@dataclass(frozen=True)
class ForestRow:
    """One estimate with its interval, in the units of the axis; None where undefined."""

    label: str
    estimate: float | None
    lower: float | None
    upper: float | None
    tone: str  # a CSS class suffix: the verdict


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class PlacedRow:
    label: str
    y: float
    x: float | None
    x_lower: float | None
    x_upper: float | None
    tone: str
    title: str


@dataclass(frozen=True)
class ForestPlot:
    width: int
    height: int
    left: float  # x of the plot area's left edge (labels sit to its left)
    right: float
    top: float
    bottom: float  # y of the axis line
    zero_x: float
    reference_x: float | None  # the margin line, when there is one
    ticks: list[Tick]
    rows: list[PlacedRow]
    axis_label: str


def nice_step(span: float, target: int = 5) -> float:
    """A 1-2-5 step that cuts ``span`` into about ``target`` intervals."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * magnitude * (1 + 1e-9):
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (the first <= lo, the last >= hi)."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo, target)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [_clean(i * step) for i in range(first, last + 1)]


def _clean(value: float) -> float:
    return 0.0 if abs(value) < 1e-12 else float(f"{value:.12g}")


def format_value(value: float | None, *, percent: bool = False, signed: bool = False) -> str:
    """A number for a person: 4 significant digits, or a percent with 2 decimals."""
    if value is None or not math.isfinite(value):
        return "—"
    if percent:
        return f"{value:+.2f}%" if signed and value else f"{value:.2f}%"
    text = f"{value:+.4g}" if signed and value else f"{value:.4g}"
    return text.replace("e+0", "e").replace("e-0", "e-")


def format_p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _tick_label(value: float, step: float, percent: bool) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    text = f"{value:+.{decimals}f}" if value else "0"
    return f"{text}%" if percent else text


def forest(
    rows: Sequence[ForestRow],
    *,
    axis_label: str,
    percent: bool = False,
    reference: float | None = None,
    width: int = 640,
    label_width: int = 130,
    row_height: int = 30,
) -> ForestPlot:
    """Place ``rows`` on a shared horizontal axis that always shows zero (and ``reference``)."""
    values = [0.0]
    for row in rows:
        values += [v for v in (row.estimate, row.lower, row.upper) if v is not None and math.isfinite(v)]
    if reference is not None:
        values.append(reference)
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    top, pad_right = 14.0, 28.0
    left, right = float(label_width), float(width) - pad_right
    bottom = top + row_height * max(len(rows), 1)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0

    def x_of(value: float) -> float:
        return round(left + (value - lo) / (hi - lo) * (right - left), 2)

    def maybe_x(value: float | None) -> float | None:
        return x_of(value) if value is not None and math.isfinite(value) else None

    placed = []
    for i, row in enumerate(rows):
        estimate = format_value(row.estimate, percent=percent, signed=True)
        interval = (
            f" [{format_value(row.lower, percent=percent, signed=True)}, "
            f"{format_value(row.upper, percent=percent, signed=True)}]"
            if row.lower is not None and row.upper is not None
            else ""
        )
        verdict = VERDICT_LABELS.get(row.tone, row.tone)
        placed.append(
            PlacedRow(
                label=row.label,
                y=top + row_height * (i + 0.5),
                x=maybe_x(row.estimate),
                x_lower=maybe_x(row.lower),
                x_upper=maybe_x(row.upper),
                tone=row.tone,
                title=f"{row.label}: {estimate}{interval} — {verdict}",
            )
        )
    return ForestPlot(
        width=width,
        height=int(bottom + 40),
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        zero_x=x_of(0.0),
        reference_x=maybe_x(reference),
        ticks=[Tick(x_of(t), _tick_label(t, step, percent)) for t in ticks],
        rows=placed,
        axis_label=axis_label,
    )


def metric_forest(
    metric: MetricResult, *, margin: float | None = None, relative_margin: bool = True
) -> ForestPlot:
    """The forest plot of one metric's comparisons: relative lift in % where every arm has
    one, else the absolute lift. ``margin`` (tolerated worsening) draws the line at -margin
    in the direction of harm, when it is on the plotted scale."""
    relative = all(c.relative_ci is not None for c in metric.comparisons)
    scale = 100.0 if relative else 1.0
    rows = []
    for c in metric.comparisons:
        estimate, interval = (
            (c.relative_lift, c.relative_ci) if relative else (c.absolute_lift, c.absolute_ci)
        )
        rows.append(
            ForestRow(
                label=c.arm,
                estimate=estimate * scale if estimate is not None else None,
                lower=interval.lower * scale if interval else None,
                upper=interval.upper * scale if interval else None,
                tone=c.verdict,
            )
        )
    reference = None
    if margin and relative_margin == relative:
        harm = -1.0 if metric.higher_is_better else 1.0
        reference = harm * margin * scale
    level = metric.comparisons[0].ci_level if metric.comparisons else 0.95
    what = "relative lift" if relative else "absolute lift"
    return forest(
        rows,
        axis_label=f"{what} vs control, {level * 100:.4g}% interval"
        + ("" if metric.higher_is_better else " (lower is better)"),
        percent=relative,
        reference=reference,
    )
