"""Verdict rules, SRM, Bayesian readout and the sequential method's formulas."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import integrate, stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from atoll.abtest.stats import AnalysisRequest, AnalysisResult, analyze
from atoll.abtest.stats.sequential import multiplier_at, rho


def arm(n: int, mean: float, std: float) -> dict[str, Any]:
    total = n * mean
    return {"n": n, "sum": total, "sum_squares": (n - 1) * std**2 + total * total / n}


def run(metrics: list[dict[str, Any]], **kw: Any) -> AnalysisResult:
    return analyze(
        AnalysisRequest.model_validate(
            {
                "arms": [{"name": "c", "weight": 0.5}, {"name": "t", "weight": 0.5}],
                "control": "c",
                "metrics": metrics,
                **kw,
            }
        )
    )


def metric(
    name: str, c_mean: float, t_mean: float, std: float = 1.0, n: int = 20000, **kw: Any
) -> dict[str, Any]:
    return {"name": name, "type": "mean", "data": {"c": arm(n, c_mean, std), "t": arm(n, t_mean, std)}, **kw}


class TestFrequentistVerdicts:
    def test_clear_win_ships(self) -> None:
        res = run([metric("revenue", 10, 10.1)])
        c = res.metrics[0].comparisons[0]
        assert c.verdict == "ship"
        assert "significantly better" in c.reasons[0]
        assert res.decisions[0].verdict == "ship"

    def test_clear_loss_does_not_ship(self) -> None:
        res = run([metric("revenue", 10, 9.9)])
        assert res.metrics[0].comparisons[0].verdict == "dont_ship"
        assert res.decisions[0].verdict == "dont_ship"

    def test_lower_is_better_flips_direction(self) -> None:
        res = run([metric("latency", 10, 9.9, higher_is_better=False)])
        assert res.metrics[0].comparisons[0].verdict == "ship"

    def test_no_difference_keeps_running(self) -> None:
        res = run([metric("revenue", 10, 10.001)])
        assert res.metrics[0].comparisons[0].verdict == "keep_running"
        assert res.decisions[0].verdict == "keep_running"

    def test_failed_guardrail_blocks_a_winner(self) -> None:
        res = run(
            [
                metric("revenue", 10, 10.1),
                metric("latency", 100, 110, std=5, guardrail=True, higher_is_better=False, margin=0.02),
            ]
        )
        guard = res.metrics[1].comparisons[0]
        assert guard.verdict == "dont_ship"
        assert "guardrail latency: worse beyond the -2.00% relative margin" in guard.reasons[0]
        assert guard.adjusted_p_value == guard.p_value  # guardrails are not corrected
        decision = res.decisions[0]
        assert decision.verdict == "dont_ship"
        assert any("guardrail latency" in r for r in decision.reasons)

    def test_guardrail_within_margin(self) -> None:
        res = run(
            [
                metric("revenue", 10, 10.1),
                metric("latency", 100, 100.5, std=5, guardrail=True, higher_is_better=False, margin=0.02),
            ]
        )
        assert res.metrics[1].comparisons[0].verdict == "ship"
        assert res.decisions[0].verdict == "ship"

    def test_inconclusive_guardrail_is_listed_but_does_not_block(self) -> None:
        res = run(
            [
                metric("revenue", 10, 10.1),
                metric("latency", 100, 102, std=50, guardrail=True, higher_is_better=False, margin=0.02),
            ]
        )
        assert res.metrics[1].comparisons[0].verdict == "keep_running"
        assert res.decisions[0].verdict == "ship"
        assert any("still crosses" in r for r in res.decisions[0].reasons)

    @pytest.mark.parametrize(
        ("t_mean", "margin_type", "margin", "expected"),
        [
            (9.99, "relative", 0.01, "ship"),  # -0.1%, margin -1%
            (9.8, "relative", 0.01, "dont_ship"),  # -2%
            (9.91, "relative", 0.01, "keep_running"),  # -0.9% +- ~0.2%
            (9.99, "absolute", 0.05, "ship"),
            (9.8, "absolute", 0.05, "dont_ship"),
        ],
    )
    def test_non_inferiority(self, t_mean: float, margin_type: str, margin: float, expected: str) -> None:
        hyp = {"type": "non_inferiority", "margin": margin, "margin_type": margin_type}
        res = run([metric("revenue", 10, t_mean)], hypothesis=hyp)
        assert res.metrics[0].comparisons[0].verdict == expected


class TestSrm:
    def test_mismatch_invalidates_everything(self) -> None:
        res = run([metric("revenue", 10, 10.1, n=20000), metric("other", 1, 1)])
        assert res.valid
        body = {
            "arms": [
                {"name": "c", "weight": 0.5, "units": 20000},
                {"name": "t", "weight": 0.5, "units": 20700},
            ],
            "control": "c",
            "metrics": [metric("revenue", 10, 10.1), metric("other", 1, 1)],
        }
        bad = analyze(AnalysisRequest.model_validate(body))
        assert not bad.valid
        assert bad.srm.mismatch
        assert bad.srm.p_value is not None
        assert bad.srm.p_value < 0.001
        for m in bad.metrics:
            for c in m.comparisons:
                assert c.verdict == "invalid"
                assert "sample ratio mismatch" in c.reasons[0]
                assert c.absolute_lift is not None  # estimates are still reported
        assert [d.verdict for d in bad.decisions] == ["invalid"]

    def test_units_default_to_metric_n(self) -> None:
        res = run([metric("revenue", 10, 10.1, n=20000)])
        assert res.srm.observed == {"c": 20000, "t": 20000}
        assert res.srm.p_value == pytest.approx(1.0)


class TestBayesian:
    """The posterior of the absolute difference D, the prior stated on D / |control mean|."""

    def _comparison(self, **kw: Any) -> tuple[Any, float, float, float]:
        c_arm, t_arm = arm(5000, 10, 4), arm(5000, 10.15, 4)
        res = run(
            [{"name": "rev", "type": "mean", "data": {"c": c_arm, "t": t_arm}}],
            method="bayesian",
            **kw,
        )
        mc, mt = 10.0, 10.15
        var = 16 / 5000 + 16 / 5000
        return res.metrics[0].comparisons[0], mt - mc, var, mc

    def test_flat_prior(self) -> None:
        c, diff, var, mc = self._comparison()
        sd = math.sqrt(var)
        assert c.p_value is None
        assert c.chance_to_beat_control == pytest.approx(stats.norm.cdf(diff / sd), rel=1e-9)
        loss, _ = integrate.quad(lambda x: -x * stats.norm.pdf(x, diff, sd), -np.inf, 0)
        gain, _ = integrate.quad(lambda x: x * stats.norm.pdf(x, diff, sd), 0, np.inf)
        assert c.expected_loss == pytest.approx(loss / mc, rel=1e-6)  # a fraction of the control mean
        assert c.expected_loss_control == pytest.approx(gain / mc, rel=1e-6)
        z = stats.norm.ppf(0.975)
        assert c.absolute_ci is not None
        assert c.relative_ci is not None
        assert c.absolute_ci.lower == pytest.approx(diff - z * sd, rel=1e-9)
        assert c.relative_ci.lower == pytest.approx((diff - z * sd) / mc, rel=1e-9)
        assert c.relative_lift == pytest.approx(diff / mc, rel=1e-9)

    def test_flat_prior_chance_is_one_minus_the_one_sided_z_p_value(self) -> None:
        rng = np.random.default_rng(17)
        control, treatment = rng.normal(-3.0, 6.0, 4000), rng.normal(-2.7, 6.5, 4000)
        summary = {
            a: {"n": y.size, "sum": float(y.sum()), "sum_squares": float(y @ y)}
            for a, y in (("c", control), ("t", treatment))
        }
        got = run([{"name": "m", "type": "mean", "data": summary}], method="bayesian").metrics[0]
        ref = CompareMeans(DescrStatsW(treatment), DescrStatsW(control))
        _, p_larger = ref.ztest_ind(alternative="larger", usevar="unequal")
        assert got.comparisons[0].chance_to_beat_control == pytest.approx(1 - p_larger, rel=1e-9)

    def test_normal_prior_shrinks(self) -> None:
        c, diff, var, mc = self._comparison(prior_mean=0.0, prior_std=0.01)
        prior_var = (0.01 * mc) ** 2  # 1% of the control mean, on D
        post_var = 1 / (1 / var + 1 / prior_var)
        post_mean = post_var * diff / var
        assert c.chance_to_beat_control == pytest.approx(
            stats.norm.cdf(post_mean / math.sqrt(post_var)), rel=1e-9
        )
        assert c.absolute_ci is not None
        z = stats.norm.ppf(0.975)
        assert c.absolute_ci.upper == pytest.approx(post_mean + z * math.sqrt(post_var), rel=1e-9)
        flat, _, _, _ = self._comparison()
        assert c.chance_to_beat_control < flat.chance_to_beat_control

    def test_prior_mean_is_relative_to_the_control_mean_whatever_its_sign(self) -> None:
        """A prior that expects a +5% lift pulls the posterior up for a negative control
        mean too (up = higher, with relative lifts over |control mean|)."""
        metrics = [metric("m", -10, -10, std=4, n=5000)]
        up = run(metrics, method="bayesian", prior_mean=0.05, prior_std=0.01).metrics[0].comparisons[0]
        assert up.chance_to_beat_control is not None
        assert up.chance_to_beat_control > 0.99
        assert up.relative_ci is not None
        assert up.relative_ci.lower > 0

    def test_verdicts(self) -> None:
        win = run([metric("rev", 10, 10.1)], method="bayesian")
        assert win.metrics[0].comparisons[0].verdict == "ship"
        assert "chance to beat control" in win.metrics[0].comparisons[0].reasons[0]
        lose = run([metric("rev", 10, 9.9)], method="bayesian")
        assert lose.metrics[0].comparisons[0].verdict == "dont_ship"
        assert win.correction == "none"

    def test_bayesian_guardrail(self) -> None:
        res = run(
            [
                metric("rev", 10, 10.1),
                metric("latency", 100, 110, std=5, guardrail=True, higher_is_better=False, margin=0.02),
            ],
            method="bayesian",
        )
        assert res.metrics[1].comparisons[0].verdict == "dont_ship"
        assert res.decisions[0].verdict == "dont_ship"


class TestSequential:
    def test_p_value_is_the_inverse_msprt_likelihood_ratio(self) -> None:
        """Johari et al. (2017): Lambda = sqrt(V/(V+tau2)) exp(tau2 d^2 / (2 V (V+tau2)))."""
        c_arm, t_arm = arm(3000, 10, 3), arm(3500, 10.3, 3.5)
        res = run(
            [{"name": "m", "type": "mean", "data": {"c": c_arm, "t": t_arm}}],
            method="sequential",
            sequential_tuning=4000,
        )
        got = res.metrics[0].comparisons[0]
        v = 9 / 3000 + 3.5**2 / 3500
        d = 0.3
        tau2 = v * 6500 * rho(0.05, 4000) ** 2  # mixing variance on the effect scale
        lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d * d / (2 * v * (v + tau2)))
        assert got.p_value == pytest.approx(min(1.0, 1 / lam), rel=1e-9)
        fixed = run([{"name": "m", "type": "mean", "data": {"c": c_arm, "t": t_arm}}])
        f, s = fixed.metrics[0].comparisons[0].absolute_ci, got.absolute_ci
        assert f is not None
        assert s is not None
        assert s.lower < f.lower
        assert s.upper > f.upper
        half = (s.upper - s.lower) / 2
        assert half == pytest.approx(multiplier_at(6500, 0.05, rho(0.05, 4000)) * math.sqrt(v), rel=1e-9)

    @pytest.mark.parametrize("lift", np.linspace(0.0, 0.2, 21).tolist())
    def test_p_value_and_interval_agree(self, lift: float) -> None:
        res = run([metric("m", 10, 10 + lift, std=3, n=4000)], method="sequential")
        c = res.metrics[0].comparisons[0]
        assert c.p_value is not None
        assert c.absolute_ci is not None
        excludes_zero = c.absolute_ci.lower > 0 or c.absolute_ci.upper < 0
        assert (c.p_value < 0.05) == excludes_zero

    def test_tightest_at_the_tuning_size(self) -> None:
        best = rho(0.05, 8000)
        at = multiplier_at(8000, 0.05, best)
        assert at < multiplier_at(8000, 0.05, best * 0.8)
        assert at < multiplier_at(8000, 0.05, best * 1.25)
