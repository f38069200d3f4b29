"""Issue 11's case: a mean metric whose control mean is negative, treatment clearly higher.

Control mean about -5.2, treatment about -4.0, n = 3,000 per arm, sd about 10 (unit-level
data from a seeded RNG). Before the fix the relative lift ``m_t / m_c - 1`` came out at
-23% for a treatment 1.2 units *higher*: the fixed readout said "ship" beside a -32% to
-15% interval, guardrails and non-inferiority said "worse beyond the margin", and the
Bayesian readout gave a 0.0% chance to beat control. Every readout of every method must
point up; scipy and statsmodels are the references where one exists.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from atoll.abtest.stats import AnalysisRequest, AnalysisResult, Comparison, analyze
from atoll.abtest.stats.sequential import multiplier_at, rho

METHODS = ["fixed", "sequential", "bayesian"]
ALPHA = 0.05


@pytest.fixture(scope="module")
def units() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(11)
    control, treatment = rng.normal(-5.2, 10, 3000), rng.normal(-4.0, 10, 3000)
    assert control.mean() == pytest.approx(-5.2, abs=0.5)
    assert treatment.mean() == pytest.approx(-4.0, abs=0.5)
    return control, treatment


def summary(y: NDArray[np.float64]) -> dict[str, Any]:
    return {"n": y.size, "sum": float(y.sum()), "sum_squares": float(y @ y)}


def run(units: tuple[NDArray[np.float64], NDArray[np.float64]], method: str, **kw: Any) -> AnalysisResult:
    control, treatment = units
    data = {"control": summary(control), "treatment": summary(treatment)}
    metric = {"name": "net_margin", "type": "mean", "data": data}
    guard = {**metric, "name": "net_margin_guard", "guardrail": True, "margin": 0.02}
    higher = kw.pop("higher_is_better", True)
    return analyze(
        AnalysisRequest.model_validate(
            {
                "arms": [{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}],
                "control": "control",
                "method": method,
                "metrics": [
                    {**metric, "higher_is_better": higher},
                    {**guard, "higher_is_better": higher},
                ],
                **kw,
            }
        )
    )


def comparisons(result: AnalysisResult) -> tuple[Comparison, Comparison]:
    return result.metrics[0].comparisons[0], result.metrics[1].comparisons[0]


@pytest.mark.parametrize("method", METHODS)
def test_every_readout_says_higher(
    units: tuple[NDArray[np.float64], NDArray[np.float64]], method: str
) -> None:
    control, treatment = units
    diff = treatment.mean() - control.mean()
    primary, guard = comparisons(run(units, method))
    for c in (primary, guard):
        assert c.absolute_lift == pytest.approx(diff, rel=1e-9)
        assert c.relative_lift == pytest.approx(diff / abs(control.mean()), rel=1e-9)
        assert c.relative_lift is not None and c.relative_lift > 0.15
        assert c.absolute_ci is not None and c.absolute_ci.lower > 0
        assert c.relative_ci is not None and c.relative_ci.lower > 0
    assert primary.verdict == "ship"
    assert guard.verdict == "ship"  # within the -2% margin, far above it in fact
    assert "within the -2.00% relative margin" in guard.reasons[0]
    if method != "bayesian":
        assert primary.reasons[0].startswith("net_margin: significantly better")
        assert "CI +" in primary.reasons[0] and "% to +" in primary.reasons[0]
    else:
        assert primary.chance_to_beat_control is not None and primary.chance_to_beat_control > 0.999
        assert primary.expected_loss is not None and primary.expected_loss_control is not None
        assert primary.expected_loss < 1e-6 < primary.expected_loss_control
        assert primary.expected_loss_control == pytest.approx(primary.relative_lift, rel=1e-3)
    notes = run(units, method).metrics[0].notes
    assert any("control mean is negative" in n for n in notes)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("margin_type", ["relative", "absolute"])
def test_non_inferiority_ships(
    units: tuple[NDArray[np.float64], NDArray[np.float64]], method: str, margin_type: str
) -> None:
    margin = 0.05 if margin_type == "relative" else 0.25
    hypothesis = {"type": "non_inferiority", "margin": margin, "margin_type": margin_type}
    result = run(units, method, hypothesis=hypothesis)
    primary, _ = comparisons(result)
    assert primary.verdict == "ship", primary.reasons
    assert "within the" in primary.reasons[0]
    assert result.decisions[0].verdict == "ship"


@pytest.mark.parametrize("method", METHODS)
def test_when_lower_is_better_the_same_data_is_a_loss(
    units: tuple[NDArray[np.float64], NDArray[np.float64]], method: str
) -> None:
    result = run(units, method, higher_is_better=False)
    primary, guard = comparisons(result)
    assert primary.verdict == "dont_ship"
    assert guard.verdict == "dont_ship"
    assert "the -2.00% relative margin" in guard.reasons[0]
    assert "worse" in guard.reasons[0]
    assert primary.relative_lift is not None and primary.relative_lift > 0  # the lift is still up
    if method == "bayesian":
        assert primary.chance_to_beat_control is not None and primary.chance_to_beat_control < 1e-3
    assert result.decisions[0].verdict == "dont_ship"


def test_fixed_against_scipy_welch(units: tuple[NDArray[np.float64], NDArray[np.float64]]) -> None:
    control, treatment = units
    primary, _ = comparisons(run(units, "fixed"))
    ref = stats.ttest_ind(treatment, control, equal_var=False)
    assert primary.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    lo, hi = ref.confidence_interval(0.95)
    assert primary.absolute_ci is not None
    assert (primary.absolute_ci.lower, primary.absolute_ci.upper) == pytest.approx((lo, hi), rel=1e-6)
    # the delta-method interval of (m_t - m_c) / |m_c|, by hand
    mc, mt = control.mean(), treatment.mean()
    vc, vt = control.var(ddof=1) / control.size, treatment.var(ddof=1) / treatment.size
    se = math.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    q = stats.t.ppf(0.975, ref.df)
    rel = (mt - mc) / abs(mc)
    assert primary.relative_ci is not None
    assert (primary.relative_ci.lower, primary.relative_ci.upper) == pytest.approx(
        (rel - q * se, rel + q * se), rel=1e-6
    )


def test_sequential_is_the_wider_always_valid_interval(
    units: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> None:
    control, treatment = units
    fixed, _ = comparisons(run(units, "fixed"))
    seq, _ = comparisons(run(units, "sequential"))
    se = math.sqrt(control.var(ddof=1) / control.size + treatment.var(ddof=1) / treatment.size)
    z = (treatment.mean() - control.mean()) / se
    r = rho(ALPHA, 5000.0)
    nr2 = 6000 * r * r
    assert seq.p_value == pytest.approx(
        math.sqrt(nr2 + 1) * math.exp(-(z**2) * nr2 / (2 * (nr2 + 1))), rel=1e-9
    )
    assert seq.absolute_ci is not None and fixed.absolute_ci is not None
    half = (seq.absolute_ci.upper - seq.absolute_ci.lower) / 2
    assert half == pytest.approx(multiplier_at(6000, ALPHA, r) * se, rel=1e-9)
    assert seq.absolute_ci.lower < fixed.absolute_ci.lower
    assert seq.relative_ci is not None and fixed.relative_ci is not None
    assert 0 < seq.relative_ci.lower < fixed.relative_ci.lower


def test_bayesian_chance_against_statsmodels_z(
    units: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> None:
    """With a flat prior the chance to beat control is one minus the one-sided z-test p-value."""
    control, treatment = units
    primary, _ = comparisons(run(units, "bayesian"))
    _, p_larger = CompareMeans(DescrStatsW(treatment), DescrStatsW(control)).ztest_ind(
        alternative="larger", usevar="unequal"
    )
    assert primary.chance_to_beat_control == pytest.approx(1 - p_larger, rel=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_mirror_image_with_a_positive_control_mean(
    units: tuple[NDArray[np.float64], NDArray[np.float64]], method: str
) -> None:
    """Negated data (control about +5.2, treatment +4.0) with lower-is-better decides the same."""
    control, treatment = units
    mirrored = run((-control, -treatment), method, higher_is_better=False)
    original = run(units, method)
    for a, b in zip(comparisons(original), comparisons(mirrored), strict=True):
        assert b.verdict == a.verdict
        assert a.relative_lift is not None and b.relative_lift is not None
        assert b.relative_lift == pytest.approx(-a.relative_lift, rel=1e-9)
        if method == "bayesian":
            assert b.chance_to_beat_control == pytest.approx(a.chance_to_beat_control, rel=1e-9)
        else:
            assert b.p_value == pytest.approx(a.p_value, rel=1e-9)
