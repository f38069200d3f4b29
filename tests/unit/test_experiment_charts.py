"""Geometry of the experiment time charts: points land where their time and value say, the
interval band closes around the line, zero is drawn when it is in range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from atoll.web.portal.experiment_charts import line_plot

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_points_are_placed_by_time_and_value_with_a_closed_band() -> None:
    data = {"green": [(T0, 0.0, -2.0, 2.0), (T0 + timedelta(hours=1), 4.0, 1.0, 7.0)]}
    plot = line_plot(data, axis_label="lift (%)", percent=True, width=640, height=220)
    green = plot.series[0]
    start, end = green.line.split(" ")
    assert start.startswith(f"M{plot.left},")
    assert end.startswith(f"L{plot.right},")
    y_start, y_end = float(start.split(",")[1]), float(end.split(",")[1])
    assert y_end < y_start  # a higher value is drawn higher up
    assert plot.zero_y == y_start  # the first point is at zero
    assert green.band.startswith("M") and green.band.endswith("Z")
    assert green.band.count("L") == 3  # two upper corners, two lower ones
    assert "+4.00% at 2026-12-01 01:00 UTC" in green.title
    assert all(t.label.endswith("%") for t in plot.y_ticks)


def test_undefined_values_are_left_out_and_an_empty_chart_still_has_axes() -> None:
    data = {"a": [(T0, None, None, None), (T0 + timedelta(minutes=5), 1.0, None, None)]}
    plot = line_plot(data, axis_label="share (%)")
    assert plot.series[0].line.count("M") == 1 and "L" not in plot.series[0].line
    assert plot.series[0].band == ""
    empty = line_plot({}, axis_label="nothing yet")
    assert empty.series == [] and empty.y_ticks
