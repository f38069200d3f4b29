"""Always-valid inference: the Gaussian-mixture confidence sequence.

The asymptotic confidence sequence of Howard, Ramdas, McAuliffe & Sekhon (2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences") with a normal mixing
distribution, in the form used by Waudby-Smith et al. (2021, "Time-uniform central limit
theory") and by GrowthBook and Eppo. For an estimate with standard error ``se`` over
``n`` units (control + treatment) the half-width is ``c(n) * se`` with

    c(n) = sqrt( 2 (n rho^2 + 1) / (n rho^2) * log( sqrt(n rho^2 + 1) / alpha ) )

and ``rho`` set so that the bound is tightest at ``n = tuning`` (the planned total
sample size):

    rho = sqrt( (-2 log alpha + log(-2 log alpha + 1)) / tuning ).

``rho`` is fixed from the request's ``alpha`` before looking at data (mixture
distributions must not depend on the data). The always-valid p-value is the smallest
``alpha'`` whose sequence excludes zero, which is the inverse of the mixture likelihood
ratio (the mSPRT of Johari, Koomen, Pekelis & Walsh 2017):

    p(n) = min(1, sqrt(n rho^2 + 1) * exp(-z^2 n rho^2 / (2 (n rho^2 + 1)))).
"""

from __future__ import annotations

import math

import numpy as np

from atoll.abtest.stats.frequentist import FloatArray


def rho(alpha: float, tuning: float) -> float:
    """Mixing parameter tuned so the sequence is tightest at ``tuning`` units."""
    a = -2 * math.log(alpha)
    return math.sqrt((a + math.log(a + 1)) / tuning)


def multiplier(n: FloatArray, alpha: FloatArray, rho_: float) -> FloatArray:
    """Half-width of the confidence sequence in units of the standard error."""
    nr2 = n * rho_**2
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.sqrt(2 * (nr2 + 1) / nr2 * np.log(np.sqrt(nr2 + 1) / alpha))
    return out


def multiplier_at(n: float, alpha: float, rho_: float) -> float:
    """Scalar :func:`multiplier`, for power calculations."""
    nr2 = n * rho_**2
    return math.sqrt(2 * (nr2 + 1) / nr2 * math.log(math.sqrt(nr2 + 1) / alpha))


def p_values(z: FloatArray, n: FloatArray, rho_: float) -> FloatArray:
    """Always-valid two-sided p-values for ``H0: effect == 0`` (``z = estimate / se``)."""
    nr2 = n * rho_**2
    with np.errstate(over="ignore", invalid="ignore"):
        p: FloatArray = np.minimum(1.0, np.sqrt(nr2 + 1) * np.exp(-(z**2) * nr2 / (2 * (nr2 + 1))))
    return p
