"""Degenerate data gives a defined, JSON-safe result with a reason, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest

from atoll.abtest.stats import AnalysisRequest, AnalysisResult, Comparison, PowerRequest, analyze, power


def run(mtype: str, control: dict[str, Any], treatment: dict[str, Any], **kw: Any) -> AnalysisResult:
    metric = {"name": "m", "type": mtype, "data": {"c": control, "t": treatment}}
    metric |= kw.pop("metric", {})
    req = AnalysisRequest.model_validate(
        {
            "arms": [{"name": "c", "weight": 0.5}, {"name": "t", "weight": 0.5}],
            "control": "c",
            "metrics": [metric],
            **kw,
        }
    )
    res = analyze(req)
    json.dumps(res.model_dump(mode="json"), allow_nan=False)  # raises on nan/inf
    return res


def comp(res: AnalysisResult) -> Comparison:
    return res.metrics[0].comparisons[0]


def binary(n: int, k: int) -> dict[str, Any]:
    return {"n": n, "sum": k, "sum_squares": k}


METHODS = ["fixed", "sequential", "bayesian"]


@pytest.mark.parametrize("method", METHODS)
class TestDegenerate:
    def test_zero_conversions_in_both_arms(self, method: str) -> None:
        c = comp(run("binary", binary(1000, 0), binary(1000, 0), method=method))
        assert c.p_value is None
        assert c.absolute_ci is None
        assert c.chance_to_beat_control is None
        assert c.absolute_lift == 0
        assert c.verdict == "keep_running"
        assert any("zero variance" in r for r in c.reasons)

    def test_all_converted_vs_none(self, method: str) -> None:
        c = comp(run("binary", binary(50, 0), binary(50, 50), method=method))
        assert c.absolute_lift == 1
        assert c.p_value is None
        assert c.verdict == "keep_running"
        assert any("zero variance" in r for r in c.reasons)

    def test_zero_conversions_in_control_only(self, method: str) -> None:
        c = comp(run("binary", binary(1000, 0), binary(1000, 12), method=method))
        assert c.relative_lift is None
        assert c.relative_ci is None
        assert c.absolute_lift == pytest.approx(0.012)
        assert any("control mean is zero" in r for r in c.reasons)
        if method == "bayesian":
            assert c.chance_to_beat_control is not None
            assert c.chance_to_beat_control > 0.99
            assert c.expected_loss is None
        else:
            assert c.p_value is not None
            assert c.p_value < 0.05

    def test_zero_variance_mean(self, method: str) -> None:
        const = {"n": 100, "sum": 300.0, "sum_squares": 900.0}
        c = comp(run("mean", const, const, method=method))
        assert c.p_value is None
        assert c.absolute_lift == 0
        assert any("zero variance" in r for r in c.reasons)

    def test_zero_variance_in_one_arm_is_fine(self, method: str) -> None:
        const = {"n": 100, "sum": 300.0, "sum_squares": 900.0}
        other = {"n": 100, "sum": 310.0, "sum_squares": 1061.0}
        c = comp(run("mean", const, other, method=method))
        assert c.absolute_ci is not None
        assert c.reasons

    @pytest.mark.parametrize("n", [0, 1])
    def test_too_few_units(self, method: str, n: int) -> None:
        small = {"n": n, "sum": float(n), "sum_squares": float(n)}
        big = {"n": 3, "sum": 9.3, "sum_squares": 30.0}  # few enough units for no SRM
        res = run("mean", small, big, method=method)
        c = comp(res)
        assert c.p_value is None
        assert c.absolute_lift is None
        assert c.verdict == "keep_running"
        assert any("below the minimum of 2" in r for r in c.reasons)
        assert res.metrics[0].arms[0].std is None

    def test_zero_denominator_ratio(self, method: str) -> None:
        zero = {
            "n": 10,
            "sum": 0.0,
            "sum_squares": 0.0,
            "denominator_sum": 0.0,
            "denominator_sum_squares": 0.0,
            "sum_products": 0.0,
        }
        fine = {
            "n": 10,
            "sum": 3.0,
            "sum_squares": 3.0,
            "denominator_sum": 20.0,
            "denominator_sum_squares": 50.0,
            "sum_products": 8.0,
        }
        c = comp(run("ratio", zero, fine, method=method))
        assert c.p_value is None
        assert any("denominator sum is zero" in r for r in c.reasons)

    def test_overflow_is_reported(self, method: str) -> None:
        huge = {"n": 10, "sum": 1e200, "sum_squares": 1e300}
        c = comp(run("mean", huge, huge, method=method))
        assert c.p_value is None
        assert c.reasons

    def test_constant_covariate_skips_cuped(self, method: str) -> None:
        arm = {
            "n": 100,
            "sum": 310.0,
            "sum_squares": 1061.0,
            "pre_sum": 100.0,
            "pre_sum_squares": 100.0,
            "sum_products": 310.0,
        }
        res = run("mean", arm, arm, method=method, metric={"cuped": True})
        assert res.metrics[0].cuped_theta == 0
        assert any("zero variance" in n for n in res.metrics[0].notes)

    def test_no_units_at_all(self, method: str) -> None:
        empty = {"n": 0, "sum": 0.0, "sum_squares": 0.0}
        res = run("mean", empty, empty, method=method)
        assert res.srm.p_value is None
        assert res.srm.reason is not None
        assert res.valid
        assert comp(res).verdict == "keep_running"
        assert res.decisions[0].verdict == "keep_running"


def mean_arm(n: int, mean: float, std: float) -> dict[str, Any]:
    total = n * mean
    return {"n": n, "sum": total, "sum_squares": (n - 1) * std**2 + total * total / n}


@pytest.mark.parametrize("method", METHODS)
class TestControlMeanNearZero:
    """|control mean| <= multiplier x its standard error: no relative readout (Fieller)."""

    def test_relative_readouts_are_withheld_with_a_reason(self, method: str) -> None:
        # control mean 0.2 with se 10/sqrt(1000) = 0.32: not distinguishable from zero
        c = comp(run("mean", mean_arm(1000, 0.2, 10), mean_arm(1000, 1.6, 10), method=method))
        assert c.relative_lift is None
        assert c.relative_ci is None
        assert c.absolute_lift == pytest.approx(1.4)
        assert c.absolute_ci is not None and c.absolute_ci.lower > 0
        assert any("within" in r and "standard errors" in r and "of zero" in r for r in c.reasons)
        assert c.verdict == "ship"  # decided on the absolute difference
        if method == "bayesian":
            assert c.expected_loss is None
            assert any("flat prior" in r for r in c.reasons)

    def test_a_relative_margin_cannot_be_judged(self, method: str) -> None:
        data = {"metric": {"guardrail": True, "margin": 0.05}}
        c = comp(run("mean", mean_arm(1000, -0.2, 10), mean_arm(1000, -0.1, 10), method=method, **data))
        assert c.verdict == "keep_running"
        assert any("relative margin needs a control mean distinguishable from zero" in r for r in c.reasons)

    def test_an_absolute_margin_still_can(self, method: str) -> None:
        data = {"metric": {"guardrail": True, "margin": 2.0, "margin_type": "absolute"}}
        c = comp(run("mean", mean_arm(1000, -0.2, 10), mean_arm(1000, -0.1, 10), method=method, **data))
        assert c.verdict == "ship"
        assert "within the -2 margin" in c.reasons[0]

    def test_a_control_mean_clearly_away_from_zero_keeps_them(self, method: str) -> None:
        c = comp(run("mean", mean_arm(1000, -2.0, 10), mean_arm(1000, -1.0, 10), method=method))
        assert c.relative_lift == pytest.approx(0.5)
        assert c.relative_ci is not None


def test_near_zero_control_mean_falls_back_to_a_flat_prior() -> None:
    """A prior on the relative lift means nothing over a control mean indistinguishable from 0."""
    c_arm, t_arm = mean_arm(1000, 0.2, 10), mean_arm(1000, 1.6, 10)
    flat = comp(run("mean", c_arm, t_arm, method="bayesian"))
    prior = comp(run("mean", c_arm, t_arm, method="bayesian", prior_mean=-0.5, prior_std=0.01))
    assert prior.chance_to_beat_control == flat.chance_to_beat_control
    away = mean_arm(1000, -5.0, 10), mean_arm(1000, -3.6, 10)
    shrunk = comp(run("mean", *away, method="bayesian", prior_mean=-0.5, prior_std=0.01))
    assert shrunk.chance_to_beat_control is not None
    assert shrunk.chance_to_beat_control < 0.5  # away from zero the prior (a 50% drop) applies


def test_a_standard_deviation_whose_error_underflows_sizes_the_smallest_test() -> None:
    """Found by the contract fuzzer: std = 5e-324 made the standard error 0.0 (a 500)."""
    request = PowerRequest(
        metric_type="mean", baseline=1.0, std=5e-324, mde=-1e-8, alpha=0.05, power=0.8, arms=2, method="fixed"
    )
    result = power(request)
    assert result.n_per_arm is not None and result.n_per_arm <= 2
