"""A/A simulation under continuous peeking: the sequential method keeps its promise."""

from __future__ import annotations

import numpy as np
import pytest

from atoll.abtest.stats import AnalysisRequest, analyze, frequentist, sequential

SIMS, N, EVERY, ALPHA = 1000, 5000, 25, 0.05


@pytest.mark.slow
def test_peeking_inflates_fixed_but_not_sequential() -> None:
    rng = np.random.default_rng(20240601)
    peeks = np.arange(EVERY, N + 1, EVERY)
    moments = []
    for _ in range(2):  # control, treatment: same lognormal distribution (A/A)
        x = rng.lognormal(0.0, 0.5, size=(SIMS, N))
        s, ss = np.cumsum(x, axis=1)[:, peeks - 1], np.cumsum(x * x, axis=1)[:, peeks - 1]
        n = np.broadcast_to(peeks, s.shape).astype(float)
        moments.append((n.ravel(), (s / n).ravel(), ((ss - s * s / n) / (n - 1)).ravel(), s, ss))
    (nc, mc, vc, sc, ssc), (nt, mt, vt, st, sst) = moments
    eff = frequentist.effects(nc, mc, vc, nt, mt, vt, np.ones(nc.size, dtype=bool))
    p_fixed = frequentist.p_values(eff.absolute, eff.var_absolute, eff.df).reshape(SIMS, -1)
    rho = sequential.rho(ALPHA, 2 * N)
    z = eff.absolute / np.sqrt(eff.var_absolute)
    p_seq = sequential.p_values(z, nc + nt, rho).reshape(SIMS, -1)

    fpr_fixed = float(np.mean((p_fixed < ALPHA).any(axis=1)))
    fpr_seq = float(np.mean((p_seq < ALPHA).any(axis=1)))
    assert fpr_seq <= ALPHA, fpr_seq
    assert fpr_fixed > 2 * ALPHA, fpr_fixed
    # a single look at the end is still calibrated for the fixed test
    assert float(np.mean(p_fixed[:, -1] < ALPHA)) == pytest.approx(ALPHA, abs=0.02)

    # the vectorised path is the one analyze() takes
    req = AnalysisRequest.model_validate(
        {
            "arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
            "control": "a",
            "method": "sequential",
            "sequential_tuning": 2 * N,
            "metrics": [
                {
                    "name": "m",
                    "type": "mean",
                    "data": {
                        "a": {"n": N, "sum": sc[0, -1], "sum_squares": ssc[0, -1]},
                        "b": {"n": N, "sum": st[0, -1], "sum_squares": sst[0, -1]},
                    },
                }
            ],
        }
    )
    assert analyze(req).metrics[0].comparisons[0].p_value == pytest.approx(p_seq[0, -1], rel=1e-9)
