"""Per-arm moments (n, mean, per-unit variance) of a metric from its summary statistics.

Every method downstream only needs, per arm, the point estimate and the variance of one
unit's contribution, so that ``Var(estimate) = var / n``:

- binary: ``p`` and the Wald variance ``p (1 - p)`` (divisor n, as in the textbook and
  statsmodels' ``wald`` methods);
- mean: the sample mean and the unbiased sample variance (divisor n - 1);
- ratio ``R = sum(num) / sum(den)``: the delta-method (linearisation) variance
  ``(s_num^2 - 2 R s_num,den + R^2 s_den^2) / mean_den^2`` (divisor n - 1);
- CUPED: the adjusted mean and residual variance from :mod:`cuped`.
"""

from __future__ import annotations

from dataclasses import dataclass

from atoll.abtest.stats import cuped
from atoll.abtest.stats.schemas import ArmData, MetricSpec

#: Smallest number of units per arm for which a metric is analysed at all. Two units
#: are the least that give a sample variance (and a positive Welch df).
MIN_N = 2


@dataclass(frozen=True)
class ArmMoments:
    n: int
    mean: float
    var: float
    issue: str | None = None


@dataclass(frozen=True)
class MetricMoments:
    arms: list[ArmMoments]
    theta: float | None
    note: str | None


def _plain(metric: MetricSpec, d: ArmData) -> ArmMoments:
    n = d.n
    if n < MIN_N:
        mean = d.sum / n if n > 0 else 0.0
        return ArmMoments(n, mean, 0.0, f"n={n} is below the minimum of {MIN_N} units")
    mean = d.sum / n
    centred = max(d.sum_squares - d.sum * d.sum / n, 0.0)
    if metric.type == "binary":
        return ArmMoments(n, mean, centred / n)
    if metric.type == "mean":
        return ArmMoments(n, mean, centred / (n - 1))
    den, den_sq, prod = d.denominator_sum or 0.0, d.denominator_sum_squares or 0.0, d.sum_products
    if den == 0:
        return ArmMoments(n, 0.0, 0.0, "denominator sum is zero: the ratio is undefined")
    ratio = d.sum / den
    s_dd = max(den_sq - den * den / n, 0.0) / (n - 1)
    s_nd = ((prod or 0.0) - d.sum * den / n) / (n - 1)
    s_nn = centred / (n - 1)
    mean_den = den / n
    var = max(s_nn - 2 * ratio * s_nd + ratio * ratio * s_dd, 0.0) / (mean_den * mean_den)
    return ArmMoments(n, ratio, var)


def metric_moments(metric: MetricSpec, arm_names: list[str]) -> MetricMoments:
    """Moments of ``metric`` for each arm in ``arm_names`` order."""
    data = [metric.data[a] for a in arm_names]
    plain = [_plain(metric, d) for d in data]
    if not metric.cuped:
        return MetricMoments(plain, None, None)
    fit = cuped.fit(data, ddof=0 if metric.type == "binary" else 1)
    arms = [p if p.issue else ArmMoments(p.n, a.mean, a.var) for p, a in zip(plain, fit.arms, strict=True)]
    return MetricMoments(arms, fit.theta, fit.note)
