"""CUPED (Deng, Xu, Kohavi & Walker 2013) from summary statistics.

One ``theta`` is pooled over all arms from the *within-arm* centred sums,
``theta = sum_i Sxy_i / sum_i Sxx_i``. That is the covariate coefficient of the OLS
regression ``y ~ arm dummies + x`` (Frisch-Waugh-Lovell), so the treatment does not
leak into theta through differences of arm means, and every arm is adjusted by the same
line. Each arm's mean is adjusted to ``ybar_i - theta * (xbar_i - xbar)`` with ``xbar``
the grand pre-period mean, so the adjusted control mean stays on the metric's scale
(relative lifts remain meaningful).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from atoll.abtest.stats.schemas import ArmData


@dataclass(frozen=True)
class CupedArm:
    """CUPED-adjusted moments of one arm (variance per unit, with ``ddof``)."""

    mean: float
    var: float


@dataclass(frozen=True)
class CupedFit:
    theta: float
    arms: list[CupedArm]
    note: str | None


def _centred(n: int, a: float, b: float, ab: float) -> float:
    return ab - a * b / n if n > 0 else 0.0


def fit(data: Sequence[ArmData], ddof: int) -> CupedFit:
    """Pool theta over ``data`` and adjust every arm.

    ``ddof`` is 0 for binary metrics (Wald variance p(1-p)) and 1 otherwise, so that with
    ``theta == 0`` the result equals the unadjusted analysis.
    """
    sxy = sxx = 0.0
    pre_total = 0.0
    n_total = 0
    for d in data:
        pre, pre_sq, prod = d.pre_sum or 0.0, d.pre_sum_squares or 0.0, d.sum_products or 0.0
        sxy += _centred(d.n, d.sum, pre, prod)
        sxx += max(_centred(d.n, pre, pre, pre_sq), 0.0)
        pre_total += pre
        n_total += d.n
    note = None
    if sxx > 0:
        theta = sxy / sxx
    else:
        theta = 0.0
        note = "CUPED skipped: the pre-period covariate has zero variance"
    grand = pre_total / n_total if n_total > 0 else 0.0
    arms: list[CupedArm] = []
    for d in data:
        if d.n == 0:
            arms.append(CupedArm(mean=0.0, var=0.0))
            continue
        pre, pre_sq, prod = d.pre_sum or 0.0, d.pre_sum_squares or 0.0, d.sum_products or 0.0
        syy = max(_centred(d.n, d.sum, d.sum, d.sum_squares), 0.0)
        a_sxx = max(_centred(d.n, pre, pre, pre_sq), 0.0)
        a_sxy = _centred(d.n, d.sum, pre, prod)
        resid = max(syy - 2 * theta * a_sxy + theta * theta * a_sxx, 0.0)
        denom = d.n - ddof
        arms.append(
            CupedArm(
                mean=d.sum / d.n - theta * (pre / d.n - grand),
                var=resid / denom if denom > 0 else 0.0,
            )
        )
    return CupedFit(theta=theta, arms=arms, note=note)
