"""Power, sample size and MDE against statsmodels' power classes."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from atoll.abtest.stats import PowerRequest, power
from atoll.abtest.stats.sequential import multiplier_at, rho


def binary_h(p1: float, p2: float) -> float:
    """The standardised effect that makes NormalIndPower use the unpooled variance."""
    return (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)


class TestFixed:
    @pytest.mark.parametrize(
        ("p1", "mde", "alpha", "target"), [(0.1, 0.1, 0.05, 0.8), (0.4, 0.02, 0.01, 0.9)]
    )
    def test_binary_sample_size(self, p1: float, mde: float, alpha: float, target: float) -> None:
        res = power(PowerRequest(metric_type="binary", baseline=p1, mde=mde, alpha=alpha, power=target))
        h = binary_h(p1, p1 * (1 + mde))
        ref = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=target, ratio=1.0)
        # statsmodels' own solver stops around 1e-6; its power function is exact.
        assert res.n_per_arm_exact == pytest.approx(ref, rel=1e-5)
        assert NormalIndPower().power(h, res.n_per_arm_exact, alpha) == pytest.approx(target, rel=1e-9)
        assert res.n_per_arm == math.ceil(ref)
        assert res.n_total == 2 * math.ceil(ref)
        assert res.achieved_power is not None
        assert res.achieved_power >= target

    @pytest.mark.parametrize(("n", "alpha"), [(50, 0.05), (2000, 0.01)])
    def test_mean_mde_and_sample_size(self, n: int, alpha: float) -> None:
        res = power(PowerRequest(metric_type="mean", baseline=10, std=3, n_per_arm=n, alpha=alpha))
        tt = TTestIndPower()
        es = tt.solve_power(nobs1=n, alpha=alpha, power=0.8, ratio=1.0)
        assert res.mde_absolute is not None
        assert res.mde_absolute == pytest.approx(es * 3, rel=1e-5)
        assert tt.power(res.mde_absolute / 3, n, alpha) == pytest.approx(0.8, rel=1e-9)
        assert res.mde_relative == pytest.approx(res.mde_absolute / 10, rel=1e-12)
        back = power(
            PowerRequest(metric_type="mean", baseline=10, std=3, mde=es * 3, mde_type="absolute", alpha=alpha)
        )
        assert back.n_per_arm_exact is not None
        assert back.n_per_arm_exact == pytest.approx(
            tt.solve_power(effect_size=es, alpha=alpha, power=0.8), rel=1e-5
        )
        assert tt.power(es, back.n_per_arm_exact, alpha) == pytest.approx(0.8, rel=1e-9)

    def test_achieved_power_with_both(self) -> None:
        res = power(PowerRequest(metric_type="mean", baseline=10, std=3, n_per_arm=400, mde=0.05))
        ref = TTestIndPower().power(effect_size=0.5 / 3, nobs1=400, alpha=0.05)
        assert res.achieved_power == pytest.approx(ref, rel=1e-6)

    def test_more_arms_split_alpha(self) -> None:
        two = power(PowerRequest(metric_type="binary", baseline=0.2, mde=0.05))
        four = power(PowerRequest(metric_type="binary", baseline=0.2, mde=0.05, arms=4))
        assert four.alpha_per_comparison == pytest.approx(0.05 / 3)
        h = binary_h(0.2, 0.21)
        assert four.n_per_arm_exact is not None
        assert NormalIndPower().power(h, four.n_per_arm_exact, 0.05 / 3) == pytest.approx(0.8, rel=1e-9)
        assert four.n_total == 4 * four.n_per_arm  # type: ignore[operator]
        assert two.n_per_arm is not None
        assert four.n_per_arm is not None
        assert four.n_per_arm > two.n_per_arm

    def test_unreachable_mde_is_reported_not_raised(self) -> None:
        res = power(PowerRequest(metric_type="binary", baseline=0.9, n_per_arm=3, power=0.99))
        assert res.mde_absolute is None
        assert res.notes


class TestSequential:
    def test_inflation_matches_closed_form(self) -> None:
        """Tuned at its own sample size the multiplier is constant, so n scales by
        ((c + z_power) / (z_alpha + z_power))^2 up to the negligible other tail."""
        fixed = power(PowerRequest(metric_type="mean", baseline=1, std=1, mde=0.1, method="bayesian"))
        seq = power(PowerRequest(metric_type="mean", baseline=1, std=1, mde=0.1, method="sequential"))
        c = multiplier_at(1000.0, 0.05, rho(0.05, 1000.0))
        assert c == pytest.approx(3.035, abs=2e-3)
        zb = stats.norm.ppf(0.8)
        expected_n = 2 * ((c + zb) / 0.1) ** 2
        assert seq.n_per_arm_exact == pytest.approx(expected_n, rel=1e-6)
        assert seq.sequential_inflation is not None
        assert seq.sequential_inflation == pytest.approx(1.9, abs=0.1)
        assert fixed.n_per_arm is not None
        assert seq.n_per_arm is not None
        assert seq.n_per_arm > fixed.n_per_arm

    def test_explicit_tuning(self) -> None:
        res = power(
            PowerRequest(
                metric_type="mean",
                baseline=1,
                std=1,
                n_per_arm=5000,
                method="sequential",
                sequential_tuning=10000,
            )
        )
        c = multiplier_at(10000.0, 0.05, rho(0.05, 10000.0))
        se = math.sqrt(2 / 5000)
        assert res.mde_absolute == pytest.approx((c + stats.norm.ppf(0.8)) * se, rel=1e-6)


class TestValidation:
    def test_needs_mde_or_n(self) -> None:
        with pytest.raises(ValidationError, match="mde or n_per_arm"):
            PowerRequest(metric_type="binary", baseline=0.1)

    def test_mean_needs_std(self) -> None:
        with pytest.raises(ValidationError, match="std"):
            PowerRequest(metric_type="mean", baseline=1, mde=0.1)

    def test_rate_bounds(self) -> None:
        with pytest.raises(ValidationError, match="baseline"):
            PowerRequest(metric_type="binary", baseline=1.5, mde=0.1)


class TestDecreases:
    """A negative MDE sizes the test for a drop; for a rate the variance at the
    alternative makes a drop and a rise of the same size need different samples."""

    @pytest.mark.parametrize(("p1", "size"), [(0.1, 0.01), (0.1, 0.002), (0.6, 0.03), (0.9, 0.045)])
    @pytest.mark.parametrize("mde_type", ["relative", "absolute"])
    def test_binary_drop_and_rise_against_statsmodels(self, p1: float, size: float, mde_type: str) -> None:
        sizes = {}
        mde = size / p1 if mde_type == "relative" else size
        for side in (+1, -1):
            res = power(PowerRequest(metric_type="binary", baseline=p1, mde=side * mde, mde_type=mde_type))
            delta = side * size
            h = binary_h(p1, p1 + delta)
            ref = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=1.0)
            assert res.n_per_arm_exact == pytest.approx(ref, rel=1e-5)
            assert res.mde_absolute == pytest.approx(delta, rel=1e-9)
            assert res.mde_relative == pytest.approx(delta / p1, rel=1e-9)
            assert any(("drop" if side < 0 else "rise") in n for n in res.notes)
            sizes[side] = res.n_per_arm
        assert sizes[-1] != sizes[+1]
        # below 1/2 the rate's variance falls with it, so a drop needs fewer units
        assert (sizes[-1] < sizes[+1]) == (p1 < 0.5)  # type: ignore[operator]

    def test_a_ten_percent_drop_of_a_ten_percent_rate(self) -> None:
        rise = power(PowerRequest(metric_type="binary", baseline=0.1, mde=0.1))
        drop = power(PowerRequest(metric_type="binary", baseline=0.1, mde=-0.1))
        assert (rise.n_per_arm, drop.n_per_arm) == (14749, 13493)

    @pytest.mark.parametrize("baseline", [10.0, -5.2])
    def test_mean_drop_needs_the_same_sample_as_a_rise(self, baseline: float) -> None:
        rise = power(PowerRequest(metric_type="mean", baseline=baseline, std=10, mde=0.1))
        drop = power(PowerRequest(metric_type="mean", baseline=baseline, std=10, mde=-0.1))
        es = 0.1 * abs(baseline) / 10  # relative MDEs are fractions of |baseline|
        ref = TTestIndPower().solve_power(effect_size=es, alpha=0.05, power=0.8)
        assert drop.n_per_arm_exact == pytest.approx(ref, rel=1e-5)
        assert drop.n_per_arm == rise.n_per_arm
        assert drop.mde_absolute == pytest.approx(-0.1 * abs(baseline))
        assert rise.mde_absolute == pytest.approx(0.1 * abs(baseline))

    @pytest.mark.parametrize("method", ["sequential", "bayesian"])
    def test_every_method_sizes_a_drop(self, method: str) -> None:
        rise = power(PowerRequest(metric_type="binary", baseline=0.2, mde=0.05, method=method))
        drop = power(PowerRequest(metric_type="binary", baseline=0.2, mde=-0.05, method=method))
        assert drop.n_per_arm is not None and rise.n_per_arm is not None
        assert drop.n_per_arm < rise.n_per_arm
        assert drop.achieved_power is not None and drop.achieved_power >= 0.8

    def test_the_mde_of_a_drop_from_a_sample_size(self) -> None:
        up = power(PowerRequest(metric_type="binary", baseline=0.1, n_per_arm=10000))
        down = power(PowerRequest(metric_type="binary", baseline=0.1, n_per_arm=10000, direction="decrease"))
        assert up.mde_absolute is not None and down.mde_absolute is not None
        assert down.mde_absolute < 0 < up.mde_absolute
        assert abs(down.mde_absolute) < up.mde_absolute
        h = binary_h(0.1, 0.1 + down.mde_absolute)
        assert NormalIndPower().power(h, 10000, 0.05) == pytest.approx(0.8, rel=1e-9)

    def test_a_drop_can_be_given_with_a_sample_size(self) -> None:
        res = power(PowerRequest(metric_type="binary", baseline=0.1, n_per_arm=13493, mde=-0.1))
        assert res.achieved_power == pytest.approx(NormalIndPower().power(binary_h(0.1, 0.09), 13493, 0.05))

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"mde": 0.0}, "must be non-zero"),
            ({"mde": -1.0}, "takes the rate from 0.1 to 0"),
            ({"mde": -0.2, "mde_type": "absolute"}, "takes the rate from 0.1 to -0.1"),
            ({"mde": 9.0}, "takes the rate from 0.1 to 1"),
            ({"mde": -0.1, "direction": "increase"}, "contradicts"),
        ],
    )
    def test_impossible_or_contradictory_effects_name_the_field(
        self, body: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValidationError, match=message):
            PowerRequest.model_validate({"metric_type": "binary", "baseline": 0.1, **body})
