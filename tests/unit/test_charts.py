"""The portal's forest-plot geometry: pure placement, no browser."""

from __future__ import annotations

import pytest

from atoll.abtest.stats import AnalysisRequest, analyze
from atoll.web.portal.charts import (
    ForestRow,
    forest,
    format_p,
    format_value,
    metric_forest,
    nice_step,
    nice_ticks,
)


class TestTicks:
    @pytest.mark.parametrize(
        ("span", "step"),
        [(10, 2), (1, 0.2), (0.03, 0.01), (0.06, 0.02), (7, 2), (100, 20), (4.5, 1), (0, 1.0)],
    )
    def test_steps_are_1_2_5(self, span: float, step: float) -> None:
        assert nice_step(span) == pytest.approx(step)

    def test_ticks_cover_the_range(self) -> None:
        ticks = nice_ticks(-1.38, 20.29)
        assert ticks[0] <= -1.38 and ticks[-1] >= 20.29
        assert ticks == [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0]

    def test_degenerate_range_is_widened(self) -> None:
        ticks = nice_ticks(0.0, 0.0)
        assert ticks[0] < 0 < ticks[-1]

    def test_no_float_noise(self) -> None:
        assert all(len(repr(t)) <= 6 for t in nice_ticks(-0.3, 0.7))


class TestForest:
    def rows(self) -> list[ForestRow]:
        return [
            ForestRow("b", 9.45, -1.38, 20.29, "keep_running"),
            ForestRow("c", -4.0, -6.0, -2.0, "dont_ship"),
            ForestRow("d", None, None, None, "keep_running"),
        ]

    def test_places_points_inside_their_intervals_and_zero_on_the_axis(self) -> None:
        plot = forest(self.rows(), axis_label="relative lift", percent=True)
        assert plot.left < plot.zero_x < plot.right
        b, c, d = plot.rows
        assert b.x_lower is not None and b.x_upper is not None and b.x is not None
        assert b.x_lower < plot.zero_x < b.x < b.x_upper
        assert c.x_upper is not None and c.x_upper < plot.zero_x
        assert d.x is None and d.x_lower is None
        assert [r.y for r in plot.rows] == sorted(r.y for r in plot.rows)
        assert plot.top < b.y < plot.bottom < plot.height

    def test_every_tick_is_inside_the_plot_and_labelled(self) -> None:
        plot = forest(self.rows(), axis_label="x", percent=True)
        xs = [t.x for t in plot.ticks]
        assert xs[0] == plot.left and xs[-1] == plot.right and xs == sorted(xs)
        assert [t.label for t in plot.ticks] == ["-10%", "0%", "+10%", "+20%", "+30%"]

    def test_zero_is_always_shown(self) -> None:
        plot = forest([ForestRow("b", 5.0, 4.0, 6.0, "ship")], axis_label="x")
        assert plot.ticks[0].label == "0"
        assert plot.zero_x == plot.left

    def test_reference_line(self) -> None:
        plot = forest([ForestRow("b", 0.0, -1.0, 1.0, "ship")], axis_label="x", reference=-2.0)
        assert plot.reference_x is not None and plot.reference_x < plot.zero_x

    def test_title_reads_as_a_sentence(self) -> None:
        plot = forest(self.rows(), axis_label="x", percent=True)
        assert plot.rows[0].title == "b: +9.45% [-1.38%, +20.29%] — Keep running"


def test_metric_forest_uses_relative_percent_and_the_guardrail_margin() -> None:
    body = AnalysisRequest.model_validate(
        {
            "arms": [{"name": "control", "weight": 0.5}, {"name": "candidate", "weight": 0.5}],
            "control": "control",
            "metrics": [
                {
                    "name": "latency_ms",
                    "type": "mean",
                    "guardrail": True,
                    "higher_is_better": False,
                    "margin": 0.02,
                    "data": {
                        "control": {"n": 10000, "sum": 1200000, "sum_squares": 160000000},
                        "candidate": {"n": 10050, "sum": 1206000, "sum_squares": 160800000},
                    },
                }
            ],
        }
    )
    metric = analyze(body).metrics[0]
    plot = metric_forest(metric, margin=0.02)
    assert plot.reference_x is not None and plot.reference_x > plot.zero_x  # harm is an increase
    assert "relative lift" in plot.axis_label and "lower is better" in plot.axis_label
    assert plot.rows[0].tone == metric.comparisons[0].verdict


def test_formatting() -> None:
    assert format_value(None) == "—"
    assert format_value(0.0094527, signed=True) == "+0.009453"
    assert format_value(9.4527, percent=True, signed=True) == "+9.45%"
    assert format_value(1.5e-7) == "1.5e-7"
    assert format_p(3e-6) == "< 0.0001"
    assert format_p(0.04321) == "0.0432"
