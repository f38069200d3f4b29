"""Bayesian readout under a Gaussian approximation, computed on the absolute difference.

The likelihood of ``D = m_t - m_c`` is ``N(D_hat, se^2)`` with the unpooled standard
error of the fixed-horizon test. The prior is stated on the relative lift
``r = D / |m_c|`` (GrowthBook's convention): ``N(prior_mean, prior_std^2)``, which with
the control mean taken as known is ``N(prior_mean |m_c|, (prior_std |m_c|)^2)`` on ``D``;
it is flat (improper) when ``prior_std`` is None or the relative lift is undefined, and
then the posterior is the likelihood. With ``s = +1`` when higher is better, else ``-1``:

- chance to beat control ``P(s D > 0) = Phi(s mu / sigma)``. Because ``r`` has the sign
  of ``D`` this is also ``P(s r > 0)``, computed without linearising a ratio, so it does
  not move when a constant is added to the metric (the delta-method normal on ``r`` would);
- chance of staying within a margin ``P(s D > -M)``, ``M`` in metric units (a relative
  margin times ``|m_c|``);
- expected loss of shipping ``E[max(0, -s D)]`` and of keeping control
  ``E[max(0, s D)]``, closed form for a normal, reported divided by ``|m_c|`` (fractions
  of the control mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from atoll.abtest.stats.frequentist import BoolArray, FloatArray


@dataclass(frozen=True)
class Posterior:
    mean: FloatArray
    std: FloatArray


@dataclass(frozen=True)
class Readout:
    """Posterior of the absolute difference and what the verdicts read off it."""

    posterior: Posterior
    chance_to_beat: FloatArray  # P(improvement > 0)
    within_margin: FloatArray  # P(improvement > -M)
    loss: FloatArray  # shipping, relative units; nan where the relative lift is undefined
    loss_control: FloatArray  # keeping control, relative units
    relative_prior: BoolArray  # the prior on the relative lift was applied


def posterior(
    estimate: FloatArray, variance: FloatArray, prior_mean: FloatArray, prior_std: FloatArray
) -> Posterior:
    """Conjugate normal update; an infinite ``prior_std`` (flat prior) returns the likelihood."""
    with np.errstate(divide="ignore", invalid="ignore"):
        prior_precision = np.where(np.isfinite(prior_std), 1 / prior_std**2, 0.0)
        weighted_prior = np.where(np.isfinite(prior_std), prior_mean * prior_precision, 0.0)
        precision = 1 / variance + prior_precision
        mean = (estimate / variance + weighted_prior) / precision
    flat = prior_precision == 0
    return Posterior(
        np.where(flat, estimate, mean), np.where(flat, np.sqrt(variance), np.sqrt(1 / precision))
    )


def prob_greater(post: Posterior, threshold: FloatArray, sign: FloatArray) -> FloatArray:
    """``P(sign * x > sign * threshold)`` under the posterior."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = special.ndtr(sign * (post.mean - threshold) / post.std)
    return out


def expected_losses(post: Posterior, sign: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(loss if the treatment is shipped, loss if control is kept), in the posterior's units."""
    mu = sign * post.mean
    sd = post.std
    with np.errstate(divide="ignore", invalid="ignore"):
        k = mu / sd
        dens = sd * np.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
        ship = dens - mu * special.ndtr(-k)
        keep = dens + mu * special.ndtr(k)
    return np.maximum(ship, 0.0), np.maximum(keep, 0.0)


def readout(
    absolute: FloatArray,
    var_absolute: FloatArray,
    control_scale: FloatArray,
    sign: FloatArray,
    margin: FloatArray,
    prior_mean: float,
    prior_std: float | None,
) -> Readout:
    """The Bayesian readout of every comparison.

    ``control_scale`` is ``|m_c|`` where the relative lift is defined and nan elsewhere
    (flat prior there, losses nan); ``margin`` is the tolerated worsening in metric units.
    """
    relative_prior = np.isfinite(control_scale) & (prior_std is not None)
    with np.errstate(invalid="ignore"):
        p_mean = np.where(relative_prior, prior_mean * control_scale, 0.0)
        p_std = np.where(relative_prior, (prior_std or 0.0) * control_scale, np.inf)
    post = posterior(absolute, var_absolute, p_mean, p_std)
    loss, loss_control = expected_losses(post, sign)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Readout(
            posterior=post,
            chance_to_beat=prob_greater(post, np.zeros_like(absolute), sign),
            within_margin=prob_greater(post, -sign * margin, sign),
            loss=loss / control_scale,
            loss_control=loss_control / control_scale,
            relative_prior=relative_prior,
        )
