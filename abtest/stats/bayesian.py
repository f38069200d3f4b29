"""Bayesian readout under a Gaussian approximation (GrowthBook-style).

The likelihood of the relative lift ``r`` is normal, ``N(r_hat, se_r^2)`` with the
delta-method standard error. The prior on ``r`` is ``N(prior_mean, prior_std^2)``, or
flat (improper) when ``prior_std`` is None, in which case the posterior is the
likelihood. With ``s = +1`` when higher is better and ``-1`` otherwise:

- chance to beat control: ``P(s r > 0) = Phi(s mu / sigma)``;
- expected loss of shipping: ``E[max(0, -s r)]``; of keeping control ``E[max(0, s r)]``,
  both in relative units (a fraction of the control mean), closed form for a normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from atoll.abtest.stats.frequentist import FloatArray


@dataclass(frozen=True)
class Posterior:
    mean: FloatArray
    std: FloatArray


def posterior(
    estimate: FloatArray, variance: FloatArray, prior_mean: float, prior_std: float | None
) -> Posterior:
    """Conjugate normal update; a flat prior returns the likelihood."""
    if prior_std is None:
        return Posterior(estimate, np.sqrt(variance))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = 1 / variance + 1 / prior_std**2
        mean = (estimate / variance + prior_mean / prior_std**2) / precision
    return Posterior(mean, np.sqrt(1 / precision))


def prob_greater(post: Posterior, threshold: FloatArray, sign: FloatArray) -> FloatArray:
    """``P(sign * r > sign * threshold)`` under the posterior."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = stats.norm.cdf(sign * (post.mean - threshold) / post.std)
    return out


def expected_losses(post: Posterior, sign: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(loss if the treatment is shipped, loss if control is kept)."""
    mu = sign * post.mean
    sd = post.std
    with np.errstate(divide="ignore", invalid="ignore"):
        k = mu / sd
        dens = sd * stats.norm.pdf(k)
        ship = dens - mu * stats.norm.cdf(-k)
        keep = dens + mu * stats.norm.cdf(k)
    return np.maximum(ship, 0.0), np.maximum(keep, 0.0)
