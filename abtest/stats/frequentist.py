"""Fixed-horizon frequentist comparison of two arms, vectorised over comparisons.

Conventions (see docs/statistics.md):

- mean metrics: Welch's t, with Welch-Satterthwaite degrees of freedom;
- binary and ratio metrics: z (normal) with the unpooled variance, i.e. the Wald test
  and interval (statsmodels ``test_proportions_2indep(method="wald")``);
- relative lift ``(mean_t - mean_c) / |mean_c|``, whose sign is always that of the
  absolute lift (``mean_t / mean_c - 1`` flips it when the control mean is negative), with
  a delta-method variance, using the same critical value as the absolute interval; it is
  reported only where the control mean is distinguishable from zero at that critical
  value (:func:`relative_defined`).

Distribution functions are scipy.special's ufuncs (``stdtr``, ``stdtrit``, ``ndtr``,
``ndtri``), the ones ``scipy.stats.t`` and ``norm`` call, without their per-call argument
checking (a tenth of the cost on small inputs). All functions take and return numpy
arrays (one element per comparison) and never raise on degenerate input; callers mask
the elements they flag as degenerate (nan here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Effects:
    """Differences treatment - control and the variances of their estimates."""

    absolute: FloatArray
    var_absolute: FloatArray
    relative: FloatArray
    var_relative: FloatArray
    df: FloatArray  # Welch df for t comparisons, inf for z comparisons


def effects(
    n_c: FloatArray,
    mean_c: FloatArray,
    var_c: FloatArray,
    n_t: FloatArray,
    mean_t: FloatArray,
    var_t: FloatArray,
    use_t: BoolArray,
) -> Effects:
    """Absolute and relative effects with Welch/z variances (per-unit ``var``).

    The relative lift divides by ``|mean_c|`` so that it has the sign of the absolute
    lift for every control mean. Its delta-method variance is the same for either sign
    of ``mean_c``: the gradient of ``(m_t - m_c) / |m_c|`` is ``(1/|m_c|, -m_t/(m_c |m_c|))``.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vc = var_c / n_c
        vt = var_t / n_t
        var_abs = vc + vt
        welch_df = var_abs**2 / (vc**2 / (n_c - 1) + vt**2 / (n_t - 1))
        df = np.where(use_t, welch_df, np.inf)
        absolute = mean_t - mean_c
        relative = np.where(mean_c != 0, absolute / np.abs(mean_c), np.nan)
        var_rel = np.where(mean_c != 0, vt / mean_c**2 + mean_t**2 * vc / mean_c**4, np.nan)
    return Effects(absolute, var_abs, relative, var_rel, df)


def relative_defined(
    n_c: FloatArray, mean_c: FloatArray, var_c: FloatArray, multiplier: FloatArray
) -> BoolArray:
    """Where the control mean is distinguishable from zero: ``|mean_c| > multiplier * se_c``.

    That is Fieller's condition: when it fails, the confidence set of a ratio over the
    control mean at the same level is unbounded (or the whole line), so the delta-method
    relative interval, the relative prior and relative margins would be artefacts of the
    linearisation. Invariant to scaling and negating the metric.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        se_c = np.sqrt(var_c / n_c)
        out: BoolArray = (mean_c != 0) & (np.abs(mean_c) > multiplier * se_c)
    return out


def _finite_df(df: FloatArray) -> tuple[BoolArray, FloatArray]:
    is_t = np.isfinite(df) & (df > 0)
    return is_t, np.where(is_t, df, 1.0)


def p_values(estimate: FloatArray, variance: FloatArray, df: FloatArray) -> FloatArray:
    """Two-sided p-values of ``estimate == 0`` (t where ``df`` is finite, else z)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.abs(estimate / np.sqrt(variance))
    is_t, safe_df = _finite_df(df)
    out: FloatArray = np.where(is_t, 2 * special.stdtr(safe_df, -stat), 2 * special.ndtr(-stat))
    return out


def critical_values(alpha: FloatArray, df: FloatArray) -> FloatArray:
    """Two-sided critical values at per-comparison ``alpha``."""
    is_t, safe_df = _finite_df(df)
    q = 1 - alpha / 2
    out: FloatArray = np.where(is_t, special.stdtrit(safe_df, q), special.ndtri(q))
    return out


def intervals(
    estimate: FloatArray, variance: FloatArray, multiplier: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``estimate -/+ multiplier * sqrt(variance)``."""
    with np.errstate(invalid="ignore"):
        half = multiplier * np.sqrt(variance)
    return estimate - half, estimate + half
