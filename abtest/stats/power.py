"""Power, sample size and minimum detectable effect for two-arm comparisons.

Per comparison of one treatment arm against control, equal allocation, two-sided:

- mean metrics, fixed horizon: the t-test power with the noncentral t distribution,
  ``df = 2n - 2``, noncentrality ``delta / (sigma sqrt(2/n))`` (as statsmodels
  ``TTestIndPower``);
- binary metrics, fixed horizon: normal approximation with the unpooled variance
  ``p1 q1 + p2 q2`` (as ``NormalIndPower`` with ``h = delta / sqrt((p1 q1 + p2 q2)/2)``);
  the variance at the alternative ``p2 = p1 + delta`` makes a drop need a different
  sample size than a rise of the same size (fewer units for a drop below 1/2);
- effects are signed: a negative ``mde`` (relative: a fraction of ``|baseline|``, as the
  analysis' relative lift) sizes the test for a drop; without ``mde`` the MDE is solved
  on the side ``direction`` names (increase by default);
- sequential: the normal approximation with the confidence-sequence multiplier
  ``c(2n)`` of :mod:`sequential` in place of ``z_{1-alpha/2}``; by default the sequence is
  tuned at the computed sample size itself, which makes ``c`` a constant (about 3.04 at
  alpha = 0.05, roughly 1.9 times the fixed-horizon sample size at 80% power);
- bayesian: the ship rule "chance to beat control >= 1 - alpha" is, under a flat prior,
  a one-sided z test at ``alpha``.

With more than two arms, ``alpha`` is split Bonferroni-style over the ``arms - 1``
comparisons (conservative for Holm and BH) unless ``correction`` is ``none``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import optimize, stats

from atoll.abtest.stats import sequential
from atoll.abtest.stats.schemas import PowerRequest, PowerResult

_N_MAX = 1e12


def _se(req: PowerRequest, delta: float, n: float) -> float:
    if req.metric_type == "binary":
        p1 = req.baseline
        p2 = p1 + delta
        return math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    assert req.std is not None
    return req.std * math.sqrt(2 / n)


def _power_fn(req: PowerRequest, alpha: float) -> Callable[[float, float], float]:
    """``power(n_per_arm, delta)`` for the request's metric type and method."""

    def fn(n: float, delta: float) -> float:
        se = _se(req, delta, n)
        if se == 0.0:  # a standard deviation so small its error underflows: any difference is certain
            return 1.0 if delta != 0 else 0.0
        d = abs(delta) / se
        if req.method == "bayesian":
            return float(stats.norm.cdf(d - stats.norm.ppf(1 - alpha)))
        if req.method == "sequential":
            tuning = req.sequential_tuning or 2 * n
            c = sequential.multiplier_at(2 * n, alpha, sequential.rho(alpha, tuning))
            return float(stats.norm.cdf(d - c) + stats.norm.cdf(-d - c))
        if req.metric_type == "mean":
            df = 2 * n - 2
            crit = stats.t.ppf(1 - alpha / 2, df)
            pw = float(stats.nct.sf(crit, df, d) + stats.nct.cdf(-crit, df, d))
            if math.isfinite(pw):
                return pw  # scipy's nct gives nan far in the tail, where power is ~1
        z = stats.norm.ppf(1 - alpha / 2)
        return float(stats.norm.cdf(d - z) + stats.norm.cdf(-d - z))

    return fn


def _solve_n(fn: Callable[[float, float], float], delta: float, target: float) -> float | None:
    if fn(2.0, delta) >= target:
        return 2.0
    if fn(_N_MAX, delta) < target:
        return None
    root: float = optimize.brentq(
        lambda ln: fn(math.exp(ln), delta) - target,
        math.log(2.0),
        math.log(_N_MAX),
        xtol=1e-13,
        rtol=1e-14,
    )
    return math.exp(root)


def _solve_delta(
    req: PowerRequest, fn: Callable[[float, float], float], n: float, target: float, side: float
) -> float | None:
    """The smallest effect on ``side`` (+1 rise, -1 drop) that reaches ``target`` power."""

    def at(size: float) -> float:
        return fn(n, side * size)

    if req.metric_type == "binary":
        room = 1 - req.baseline if side > 0 else req.baseline
        hi = room * (1 - 1e-9)
    else:
        assert req.std is not None
        hi = req.std
        while at(hi) < target and hi < 1e6 * req.std:
            hi *= 2
    if at(hi) < target:
        return None
    lo = hi * 1e-12
    if at(lo) >= target:
        return side * lo
    root: float = optimize.brentq(lambda d: at(d) - target, lo, hi, xtol=1e-15, rtol=1e-13)
    return side * root


def _side(request: PowerRequest) -> float:
    """+1 for a rise, -1 for a drop: the sign of ``mde``, else ``direction``."""
    if request.mde is not None:
        return -1.0 if request.mde < 0 else 1.0
    return -1.0 if request.direction == "decrease" else 1.0


def _rate_note(request: PowerRequest, delta: float) -> str:
    """What a binary effect does to the rate (validation keeps the new rate within (0, 1))."""
    p1, p2 = request.baseline, request.baseline + delta
    word = "drop" if delta < 0 else "rise"
    return f"sized for a {word} of the rate from {p1:.6g} to {p2:.6g}"


def power(request: PowerRequest) -> PowerResult:
    """Sample size per arm (from ``mde``), MDE (from ``n_per_arm``), or power (both)."""
    comparisons = request.arms - 1
    alpha = request.alpha
    if request.correction != "none" and comparisons > 1:
        alpha = alpha / comparisons
    fn = _power_fn(request, alpha)
    base = abs(request.baseline)
    notes: list[str] = []
    if comparisons > 1:
        notes.append(f"alpha split over {comparisons} comparisons: {alpha:.6g} each")

    def to_abs(mde: float) -> float:
        return mde * base if request.mde_type == "relative" else mde

    n_exact: float | None = None
    delta: float | None = None
    achieved: float | None = None
    if request.mde is not None:
        delta = to_abs(request.mde)
        if request.metric_type == "binary":
            notes.append(_rate_note(request, delta))
    if delta is not None and request.n_per_arm is not None:
        n_exact = float(request.n_per_arm)
        achieved = fn(n_exact, delta)
    elif delta is not None:
        n_exact = _solve_n(fn, delta, request.power)
        if n_exact is None:
            notes.append("the target power is not reachable below 1e12 units per arm")
        else:
            achieved = fn(float(math.ceil(n_exact - 1e-9)), delta)
    elif request.n_per_arm is not None and request.mde is None:
        n_exact = float(request.n_per_arm)
        delta = _solve_delta(request, fn, n_exact, request.power, _side(request))
        if delta is None:
            notes.append("no effect within the metric's range reaches the target power")
        else:
            achieved = request.power

    inflation = None
    if request.method == "sequential" and delta is not None and n_exact is not None:
        fixed = request.model_copy(update={"method": "fixed"})
        n_fixed = _solve_n(_power_fn(fixed, alpha), delta, request.power)
        n_seq = _solve_n(fn, delta, request.power)
        if n_fixed and n_seq:
            inflation = n_seq / n_fixed
    n_int = math.ceil(n_exact - 1e-9) if n_exact is not None else None
    return PowerResult(
        metric_type=request.metric_type,
        method=request.method,
        alpha=request.alpha,
        alpha_per_comparison=alpha,
        target_power=request.power,
        n_per_arm=n_int,
        n_per_arm_exact=n_exact,
        n_total=n_int * request.arms if n_int is not None else None,
        mde_absolute=delta,
        mde_relative=delta / base if delta is not None and base > 0 else None,
        achieved_power=achieved,
        sequential_inflation=inflation,
        notes=notes,
    )
