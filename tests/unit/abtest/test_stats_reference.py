"""The engine against scipy and statsmodels on unit-level data (seeded numpy RNG)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from numpy.typing import NDArray
from scipy import stats
from statsmodels.stats import proportion
from statsmodels.stats.multitest import multipletests

from atoll.abtest.stats import AnalysisRequest, AnalysisResult, Comparison, analyze

Arr = NDArray[np.float64]
REL = 1e-6


def summary(y: Arr, pre: Arr | None = None, den: Arr | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"n": y.size, "sum": float(y.sum()), "sum_squares": float(y @ y)}
    if pre is not None:
        out |= {"pre_sum": float(pre.sum()), "pre_sum_squares": float(pre @ pre)}
        out["sum_products"] = float(y @ pre)
    if den is not None:
        out |= {"denominator_sum": float(den.sum()), "denominator_sum_squares": float(den @ den)}
        out["sum_products"] = float(y @ den)
    return out


def run(metrics: list[dict[str, Any]], arms: dict[str, float], **kw: Any) -> AnalysisResult:
    req = AnalysisRequest.model_validate(
        {
            "arms": [{"name": a, "weight": w} for a, w in arms.items()],
            "control": next(iter(arms)),
            "metrics": metrics,
            **kw,
        }
    )
    return analyze(req)


def only(result: AnalysisResult, metric: int = 0, arm: int = 0) -> Comparison:
    return result.metrics[metric].comparisons[arm]


def ci(c: Comparison) -> tuple[float, float]:
    assert c.absolute_ci is not None
    return c.absolute_ci.lower, c.absolute_ci.upper


class TestMeanAgainstScipyWelch:
    @pytest.mark.parametrize(
        ("n_c", "n_t", "dist"),
        [
            (2000, 2000, "normal"),
            (800, 3200, "normal"),  # unequal split
            (5, 5, "normal"),  # tiny samples
            (5, 9, "normal"),
            (3000, 2500, "lognormal"),  # heavy tailed
        ],
    )
    def test_p_value_and_interval(self, n_c: int, n_t: int, dist: str) -> None:
        rng = np.random.default_rng(n_c * 7 + n_t)
        if dist == "normal":
            c, t = rng.normal(10, 3, n_c), rng.normal(10.4, 4, n_t)
        else:
            c, t = rng.lognormal(1, 1.2, n_c), rng.lognormal(1.05, 1.2, n_t)
        w = n_c / (n_c + n_t)
        res = run(
            [{"name": "m", "type": "mean", "data": {"c": summary(c), "t": summary(t)}}],
            {"c": w, "t": 1 - w},
        )
        ref = stats.ttest_ind(t, c, equal_var=False)
        got = only(res)
        assert got.p_value == pytest.approx(ref.pvalue, rel=REL)
        lo, hi = ref.confidence_interval(0.95)
        assert ci(got) == pytest.approx((lo, hi), rel=REL)
        assert got.absolute_lift == pytest.approx(t.mean() - c.mean(), rel=1e-9)
        assert got.ci_level == pytest.approx(0.95)

    def test_relative_interval_is_delta_method(self) -> None:
        rng = np.random.default_rng(3)
        c, t = rng.normal(20, 5, 1500), rng.normal(21, 6, 1700)
        res = run(
            [{"name": "m", "type": "mean", "data": {"c": summary(c), "t": summary(t)}}],
            {"c": 0.5, "t": 0.5},
        )
        got = only(res)
        mc, mt = c.mean(), t.mean()
        vc, vt = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
        se = np.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
        df = stats.ttest_ind(t, c, equal_var=False).df
        q = stats.t.ppf(0.975, df)
        assert got.relative_lift == pytest.approx(mt / mc - 1, rel=1e-9)
        assert got.relative_ci is not None
        lo, hi = got.relative_ci.lower, got.relative_ci.upper
        assert (lo, hi) == pytest.approx((mt / mc - 1 - q * se, mt / mc - 1 + q * se), rel=REL)


class TestBinaryAgainstStatsmodelsWald:
    @pytest.mark.parametrize(
        ("n_c", "n_t", "p_c", "p_t"), [(5000, 5000, 0.1, 0.11), (900, 4100, 0.3, 0.27), (5, 5, 0.4, 0.6)]
    )
    def test_unpooled_z(self, n_c: int, n_t: int, p_c: float, p_t: float) -> None:
        rng = np.random.default_rng(n_c + n_t)
        c = (rng.random(n_c) < p_c).astype(float)
        t = (rng.random(n_t) < p_t).astype(float)
        if c.sum() in (0, n_c):
            c[0] = 1 - c[0]
        w = n_c / (n_c + n_t)
        res = run(
            [{"name": "conv", "type": "binary", "data": {"c": summary(c), "t": summary(t)}}],
            {"c": w, "t": 1 - w},
        )
        got = only(res)
        args = (t.sum(), n_t, c.sum(), n_c)
        ref = proportion.test_proportions_2indep(*args, method="wald", compare="diff")
        lo, hi = proportion.confint_proportions_2indep(*args, method="wald", compare="diff", alpha=0.05)
        assert got.p_value == pytest.approx(ref.pvalue, rel=REL)
        assert ci(got) == pytest.approx((lo, hi), rel=REL)


class TestThreeArmsCorrection:
    @pytest.fixture
    def data(self) -> dict[str, dict[str, Arr]]:
        rng = np.random.default_rng(42)
        return {
            "rev": {a: rng.normal(mu, 2.0, 600) for a, mu in (("a", 5), ("b", 5.25), ("c", 5.1))},
            "time": {a: rng.normal(mu, 1.0, 600) for a, mu in (("a", 3), ("b", 3.02), ("c", 3.15))},
        }

    @pytest.mark.parametrize(("correction", "sm_method"), [("holm", "holm"), ("bh", "fdr_bh")])
    def test_adjusted_p_values_and_intervals(
        self, data: dict[str, dict[str, Arr]], correction: str, sm_method: str
    ) -> None:
        metrics = [
            {"name": m, "type": "mean", "data": {a: summary(v) for a, v in arms.items()}}
            for m, arms in data.items()
        ]
        res = run(metrics, {"a": 0.4, "b": 0.3, "c": 0.3}, correction=correction)
        raw = [
            stats.ttest_ind(arms[t], arms["a"], equal_var=False) for arms in data.values() for t in ("b", "c")
        ]
        pvals = np.array([r.pvalue for r in raw])
        reject, adj, _, _ = multipletests(pvals, alpha=0.05, method=sm_method)
        got = [c for m in res.metrics for c in m.comparisons]
        assert [c.arm for c in got] == ["b", "c", "b", "c"]
        assert [c.p_value for c in got] == pytest.approx(pvals, rel=REL)
        assert [c.adjusted_p_value for c in got] == pytest.approx(adj, rel=REL)
        m = len(pvals)
        level = 1 - 0.05 / m if correction == "holm" else 1 - 0.05 * max(reject.sum(), 1) / m
        for c, r in zip(got, raw, strict=True):
            assert c.ci_level == pytest.approx(level)
            assert ci(c) == pytest.approx(tuple(r.confidence_interval(level)), rel=REL)
        assert res.correction == correction
        assert str(m) in res.correction_note

    def test_no_correction_keeps_p(self, data: dict[str, dict[str, Arr]]) -> None:
        arms = data["rev"]
        res = run(
            [{"name": "rev", "type": "mean", "data": {a: summary(v) for a, v in arms.items()}}],
            {"a": 0.4, "b": 0.3, "c": 0.3},
            correction="none",
        )
        for c in res.metrics[0].comparisons:
            assert c.adjusted_p_value == c.p_value
            assert c.ci_level == pytest.approx(0.95)


class TestCupedAgainstOls:
    def test_theta_effect_and_welch_on_adjusted_values(self) -> None:
        rng = np.random.default_rng(7)
        sizes = {"a": 1200, "b": 1000, "c": 1100}
        lift = {"a": 0.0, "b": 0.3, "c": -0.1}
        pre = {a: rng.gamma(2.0, 2.0, n) for a, n in sizes.items()}
        post = {a: 1 + 0.8 * pre[a] + lift[a] + rng.normal(0, 1.5, n) for a, n in sizes.items()}
        total = sum(sizes.values())
        res = run(
            [
                {
                    "name": "spend",
                    "type": "mean",
                    "cuped": True,
                    "data": {a: summary(post[a], pre=pre[a]) for a in sizes},
                }
            ],
            {a: n / total for a, n in sizes.items()},
            correction="none",
        )
        y = np.concatenate(list(post.values()))
        x = np.concatenate(list(pre.values()))
        arm = np.repeat(list(sizes), list(sizes.values()))
        design = np.column_stack([np.ones_like(y), arm == "b", arm == "c", x]).astype(float)
        ols = sm.OLS(y, design).fit()
        theta = ols.params[3]
        metric = res.metrics[0]
        assert metric.cuped_theta == pytest.approx(theta, rel=1e-9)
        assert [c.absolute_lift for c in metric.comparisons] == pytest.approx(ols.params[1:3], rel=1e-9)
        xbar = x.mean()
        adjusted = {a: post[a] - theta * (pre[a] - xbar) for a in sizes}
        for c in metric.comparisons:
            ref = stats.ttest_ind(adjusted[c.arm], adjusted["a"], equal_var=False)
            assert c.p_value == pytest.approx(ref.pvalue, rel=REL)
            assert ci(c) == pytest.approx(tuple(ref.confidence_interval(0.95)), rel=REL)
            # CUPED's sandwich-free standard error is close to OLS's robust one.
            se = (ci(c)[1] - ci(c)[0]) / (2 * stats.t.ppf(0.975, ref.df))
            robust = sm.OLS(y, design).fit(cov_type="HC1").bse[1 if c.arm == "b" else 2]
            assert se == pytest.approx(robust, rel=0.02)
        plain = stats.ttest_ind(post["b"], post["a"], equal_var=False)
        assert ci(metric.comparisons[0])[1] - ci(metric.comparisons[0])[0] < 0.7 * (
            np.subtract(*plain.confidence_interval(0.95)[::-1])
        )


class TestRatioDeltaMethod:
    @pytest.fixture
    def units(self) -> dict[str, tuple[Arr, Arr]]:
        rng = np.random.default_rng(11)
        out: dict[str, tuple[Arr, Arr]] = {}
        for arm, p, n in (("c", 0.05, 3000), ("t", 0.055, 2800)):
            impressions = (rng.poisson(rng.gamma(2.0, 4.0, n)) + 1.0).astype(np.float64)
            clicks = rng.binomial(impressions.astype(int), p).astype(float)
            out[arm] = (clicks, impressions)
        return out

    def test_known_formula(self, units: dict[str, tuple[Arr, Arr]]) -> None:
        res = run(
            [
                {
                    "name": "ctr",
                    "type": "ratio",
                    "data": {a: summary(m, den=d) for a, (m, d) in units.items()},
                }
            ],
            {"c": 0.5, "t": 0.5},
            correction="none",
        )
        var, ratio = {}, {}
        for a, (m, d) in units.items():
            ratio[a] = m.sum() / d.sum()
            var[a] = np.var(m - ratio[a] * d, ddof=1) / (d.size * d.mean() ** 2)
        diff = ratio["t"] - ratio["c"]
        se = np.sqrt(var["t"] + var["c"])
        got = only(res)
        assert got.absolute_lift == pytest.approx(diff, rel=1e-9)
        assert ci(got) == pytest.approx(
            (diff - 1.959963984540054 * se, diff + 1.959963984540054 * se), rel=REL
        )
        assert got.p_value == pytest.approx(2 * stats.norm.sf(abs(diff) / se), rel=REL)

    def test_bootstrap_standard_error(self, units: dict[str, tuple[Arr, Arr]]) -> None:
        rng = np.random.default_rng(5)
        boots = []
        for _ in range(2000):
            r = {}
            for a, (m, d) in units.items():
                idx = rng.integers(0, m.size, m.size)
                r[a] = m[idx].sum() / d[idx].sum()
            boots.append(r["t"] - r["c"])
        res = run(
            [
                {
                    "name": "ctr",
                    "type": "ratio",
                    "data": {a: summary(m, den=d) for a, (m, d) in units.items()},
                }
            ],
            {"c": 0.5, "t": 0.5},
        )
        lo, hi = ci(only(res))
        assert (hi - lo) / (2 * 1.959963984540054) == pytest.approx(np.std(boots), rel=0.06)


class TestSrm:
    def test_against_scipy_chisquare(self) -> None:
        obs = {"a": 5120, "b": 4890, "c": 9990}
        weights = {"a": 0.25, "b": 0.25, "c": 0.5}
        rng = np.random.default_rng(1)
        res = run(
            [
                {
                    "name": "m",
                    "type": "mean",
                    "data": {a: summary(rng.normal(0, 1, n)) for a, n in obs.items()},
                }
            ],
            weights,
        )
        total = sum(obs.values())
        ref = stats.chisquare(list(obs.values()), [total * w for w in weights.values()])
        assert res.srm.statistic == pytest.approx(ref.statistic, rel=1e-9)
        assert res.srm.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert res.srm.mismatch == bool(ref.pvalue < 0.001)
