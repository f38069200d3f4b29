"""Thompson-sampling allocation (abtest/adaptive.py): weights, posteriors, and its regret."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from atoll.abtest.adaptive import (
    BetaPosterior,
    allocate,
    beta_posterior,
    posterior_from_sums,
    posterior_summary,
    probability_best,
    thompson_weights,
)
from atoll.abtest.stats.schemas import ArmData


class TestAllocate:
    @given(
        shares=st.lists(st.floats(0, 1), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
        floor=st.integers(0, 16),
    )
    def test_sums_to_100_and_keeps_every_floor(self, shares: list[float], floor: int) -> None:
        named = {f"arm-{i}": share for i, share in enumerate(shares)}
        weights = allocate(named, floor_percent=floor)
        assert sum(weights.values()) == 100
        assert list(weights) == list(named)
        assert all(w >= floor for w in weights.values())
        total = sum(shares)
        for arm, share in named.items():  # largest remainder: within one point of the exact quota
            quota = floor + (100 - floor * len(shares)) * share / total
            assert abs(weights[arm] - quota) < 1

    def test_rounds_by_largest_remainder(self) -> None:
        assert allocate({"a": 1, "b": 1, "c": 1}, floor_percent=0) == {"a": 34, "b": 33, "c": 33}
        assert allocate({"a": 0.0, "b": 1.0}, floor_percent=10) == {"a": 10, "b": 90}

    @pytest.mark.parametrize(
        ("shares", "floor", "message"),
        [
            ({"a": 1.0, "b": 1.0, "c": 1.0}, 34, "floor_percent"),
            ({"a": 1.0}, -1, "floor_percent"),
            ({"a": 0.0, "b": 0.0}, 10, "shares"),
            ({}, 10, "shares"),
        ],
    )
    def test_impossible_requests_name_the_field(
        self, shares: dict[str, float], floor: int, message: str
    ) -> None:
        with pytest.raises(ValueError, match=f"^{message}"):
            allocate(shares, floor_percent=floor)


class TestThompsonWeights:
    def test_is_deterministic_with_a_seed(self) -> None:
        posteriors = {"control": beta_posterior(100, 1000), "treatment": beta_posterior(110, 1000)}
        first = thompson_weights(posteriors, floor_percent=10, draws=5000, seed=42)
        assert thompson_weights(posteriors, floor_percent=10, draws=5000, seed=42) == first
        runs = {tuple(thompson_weights(posteriors, 10, 5000, seed).values()) for seed in range(5)}
        assert len(runs) > 1, "another seed draws other samples"

    def test_the_better_arm_gets_more_traffic(self) -> None:
        posteriors = {
            "control": beta_posterior(100, 1000),
            "better": beta_posterior(130, 1000),
            "worse": beta_posterior(80, 1000),
        }
        weights = thompson_weights(posteriors, floor_percent=5, draws=20_000, seed=1)
        assert weights["better"] > weights["control"] >= weights["worse"] >= 5
        assert sum(weights.values()) == 100

    def test_equal_evidence_splits_evenly(self) -> None:
        posteriors = {"a": beta_posterior(50, 500), "b": beta_posterior(50, 500)}
        weights = thompson_weights(posteriors, floor_percent=10, draws=40_000, seed=3)
        assert abs(weights["a"] - 50) <= 2

    def test_probability_best_matches_the_closed_form_for_two_arms(self) -> None:
        a, b = BetaPosterior(3, 7), BetaPosterior(5, 5)
        # P(B > A) by numerical integration of the two Beta densities
        grid = np.linspace(0, 1, 20_001)
        exact = float(np.trapezoid(stats.beta.pdf(grid, 5, 5) * stats.beta.cdf(grid, 3, 7), grid))
        estimate = probability_best({"a": a, "b": b}, draws=200_000, seed=0)
        assert estimate["b"] == pytest.approx(exact, abs=0.005)
        assert estimate["a"] + estimate["b"] == pytest.approx(1.0)


class TestPosteriors:
    def test_binary_sums_give_the_conjugate_posterior(self) -> None:
        posterior = posterior_from_sums(ArmData(n=200, sum=30, sum_squares=30))
        assert (posterior.alpha, posterior.beta) == (31, 171)

    def test_bounded_metric_uses_the_bernoulli_trick(self) -> None:
        # 4 units rated 1..5: scaled 0, 0.5, 1, 0.75 -> 2.25 expected successes of 4
        values = [1.0, 3.0, 5.0, 4.0]
        data = ArmData(n=4, sum=sum(values), sum_squares=sum(v * v for v in values))
        posterior = posterior_from_sums(data, bounds=(1.0, 5.0))
        assert posterior.alpha == pytest.approx(3.25) and posterior.beta == pytest.approx(2.75)

    def test_a_mean_outside_the_bounds_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"^bounds: the arm's mean 6"):
            posterior_from_sums(ArmData(n=1, sum=6.0, sum_squares=36.0), bounds=(1.0, 5.0))

    def test_summary_for_the_page(self) -> None:
        posteriors = {"control": beta_posterior(10, 100), "treatment": beta_posterior(20, 100)}
        summary = posterior_summary(posteriors, draws=10_000, seed=7)
        assert [s.arm for s in summary] == ["control", "treatment"]
        for s in summary:
            assert s.lower < s.mean < s.upper and s.credible_level == 0.95
        assert summary[1].probability_best > 0.95
        assert sum(s.probability_best for s in summary) == pytest.approx(1.0)


RATES = {"control": 0.10, "treatment": 0.12}
ROUNDS, UNITS_PER_ROUND, REPETITIONS = 20, 1000, 30


def simulated_regret(seed: int, *, adaptive: bool) -> float:
    """Expected conversions lost to the worse arm over ROUNDS re-weightings of a two-arm test."""
    rng = np.random.default_rng(seed)
    successes = dict.fromkeys(RATES, 0)
    trials = dict.fromkeys(RATES, 0)
    best = max(RATES.values())
    regret = 0.0
    for round_number in range(ROUNDS):
        if adaptive:
            posteriors = {arm: beta_posterior(successes[arm], trials[arm]) for arm in RATES}
            weights = thompson_weights(
                posteriors, floor_percent=10, draws=4000, seed=seed * 1000 + round_number
            )
        else:
            weights = {"control": 50, "treatment": 50}
        for arm, rate in RATES.items():
            units = UNITS_PER_ROUND * weights[arm] // 100
            trials[arm] += units
            successes[arm] += int(rng.binomial(units, rate))
            regret += units * (best - rate)
    return regret


def test_thompson_has_less_regret_than_a_fixed_50_50_split() -> None:
    adaptive = [simulated_regret(seed, adaptive=True) for seed in range(REPETITIONS)]
    fixed = [simulated_regret(seed, adaptive=False) for seed in range(REPETITIONS)]
    assert statistics.fmean(fixed) == pytest.approx(ROUNDS * UNITS_PER_ROUND / 2 * 0.02)
    assert statistics.fmean(adaptive) < 0.5 * statistics.fmean(fixed)
    assert sum(a < f for a, f in zip(adaptive, fixed, strict=True)) >= 0.9 * REPETITIONS
