"""Benchmark: analysis of 1,000 metrics x 3 arms from summaries, against the anchor.

Anchor: the same computations done per metric with scipy.stats / statsmodels calls
(``ttest_ind_from_stats`` for mean metrics, ``test_proportions_2indep`` and
``confint_proportions_2indep`` (Wald) for binary metrics, then ``multipletests`` (Holm)
over the family and Bonferroni intervals). Atoll: ``analyze`` on the same data.

Run: ``uv run python bench/bench_stats.py``. Goal: Atoll <= 1 s.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats import proportion
from statsmodels.stats.multitest import multipletests

from atoll.abtest.stats import AnalysisRequest, analyze

METRICS, ARMS, ALPHA = 1000, ("control", "b", "c"), 0.05


def make_body(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    metrics = []
    for i in range(METRICS):
        data: dict[str, dict[str, float]] = {}
        if i % 2:
            rate = rng.uniform(0.01, 0.5)
            for arm in ARMS:
                n = int(rng.integers(9_000, 11_000))
                k = float(rng.binomial(n, rate * rng.uniform(0.97, 1.03)))
                data[arm] = {"n": n, "sum": k, "sum_squares": k}
            metrics.append({"name": f"m{i}", "type": "binary", "data": data})
        else:
            mu, sd = rng.uniform(1, 100), rng.uniform(0.5, 50)
            for arm in ARMS:
                n = int(rng.integers(9_000, 11_000))
                mean = mu * rng.uniform(0.98, 1.02)
                s = n * mean
                data[arm] = {"n": n, "sum": s, "sum_squares": (n - 1) * sd**2 + s * s / n}
            metrics.append({"name": f"m{i}", "type": "mean", "data": data})
    return {
        "arms": [{"name": a, "weight": 1 / 3} for a in ARMS[:-1]] + [{"name": ARMS[-1], "weight": 1 - 2 / 3}],
        "control": "control",
        "metrics": metrics,
        "correction": "holm",
        "alpha": ALPHA,
    }


def anchor(body: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """p-values and Bonferroni intervals per comparison, one library call at a time."""
    p, est, se_mult = [], [], []
    for m in body["metrics"]:
        c = m["data"]["control"]
        for arm in ARMS[1:]:
            t = m["data"][arm]
            if m["type"] == "mean":
                mc, mt = c["sum"] / c["n"], t["sum"] / t["n"]
                sc = np.sqrt((c["sum_squares"] - c["sum"] * mc) / (c["n"] - 1))
                st = np.sqrt((t["sum_squares"] - t["sum"] * mt) / (t["n"] - 1))
                res = stats.ttest_ind_from_stats(mt, st, t["n"], mc, sc, c["n"], equal_var=False)
                vc, vt = sc**2 / c["n"], st**2 / t["n"]
                df = (vc + vt) ** 2 / (vc**2 / (c["n"] - 1) + vt**2 / (t["n"] - 1))
                p.append(res.pvalue)
                est.append((mt - mc, np.sqrt(vc + vt), df))
            else:
                args = (t["sum"], t["n"], c["sum"], c["n"])
                res = proportion.test_proportions_2indep(*args, method="wald", compare="diff")
                p.append(res.pvalue)
                lo, hi = proportion.confint_proportions_2indep(*args, method="wald", alpha=ALPHA)
                est.append(((lo + hi) / 2, (hi - lo) / (2 * stats.norm.ppf(1 - ALPHA / 2)), np.inf))
            se_mult.append(m["type"])
    _, adj, _, _ = multipletests(np.array(p), alpha=ALPHA, method="holm")
    level = ALPHA / len(p)
    lows = []
    for (d, se, df), _kind in zip(est, se_mult, strict=True):
        q = stats.t.ppf(1 - level / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - level / 2)
        lows.append(d - q * se)
    return adj, np.array(lows)


def best_of(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    body = make_body()
    raw = json.dumps(body)
    t_validate, request = best_of(lambda: AnalysisRequest.model_validate_json(raw))
    t_atoll, result = best_of(lambda: analyze(request))
    t_anchor, (adj, lows) = best_of(lambda: anchor(body))

    got = [c for m in result.metrics for c in m.comparisons]
    got_adj = np.array([c.adjusted_p_value for c in got], dtype=float)
    got_low = np.array([c.absolute_ci.lower for c in got if c.absolute_ci], dtype=float)
    agree_p = float(np.max(np.abs(got_adj - adj) / np.maximum(adj, 1e-300)))
    agree_ci = float(np.max(np.abs(got_low - lows) / np.maximum(np.abs(lows), 1e-300)))

    print(f"analysis of {METRICS} metrics x {len(ARMS)} arms ({len(got)} comparisons), Holm")
    print(f"{'':32}{'seconds':>10}")
    print(f"{'anchor (scipy/statsmodels loop)':32}{t_anchor:>10.3f}")
    print(f"{'atoll analyze()':32}{t_atoll:>10.3f}")
    print(f"{'atoll validate JSON + analyze()':32}{t_validate + t_atoll:>10.3f}")
    print(f"ratio anchor / atoll analyze: {t_anchor / t_atoll:.1f}x")
    print(f"ratio anchor / atoll validate+analyze: {t_anchor / (t_validate + t_atoll):.1f}x")
    print(f"max rel. difference: adjusted p {agree_p:.1e}, interval lower bound {agree_ci:.1e}")
    print(f"goal <= 1 s: {'met' if t_validate + t_atoll <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
