"""Multiple-comparison corrections over a family of p-values, and adjusted intervals.

- ``holm``: Holm (1979) step-down, controls the family-wise error rate. Intervals use the
  Bonferroni level ``alpha / m`` (Holm has no simple compatible intervals; Bonferroni
  intervals are the usual conservative companion).
- ``bh``: Benjamini & Hochberg (1995) step-up, controls the false discovery rate.
  Intervals use the false-coverage-rate level of Benjamini & Yekutieli (2005),
  ``alpha * R / m`` with ``R`` the number of BH rejections (``R = 1`` when none), which
  excludes zero exactly for the rejected comparisons.
"""

from __future__ import annotations

import numpy as np

from atoll.abtest.stats.frequentist import FloatArray
from atoll.abtest.stats.schemas import Correction


def holm(p: FloatArray) -> FloatArray:
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adj = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out = np.empty_like(p)
    out[order] = adj
    return out


def benjamini_hochberg(p: FloatArray) -> FloatArray:
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = m / np.arange(1, m + 1) * p[order]
    adj = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty_like(p)
    out[order] = adj
    return out


def adjust(p: FloatArray, correction: Correction) -> FloatArray:
    """Adjusted p-values for the family ``p`` (all finite)."""
    if p.size == 0 or correction == "none":
        return p.copy()
    return holm(p) if correction == "holm" else benjamini_hochberg(p)


def interval_alpha(adjusted: FloatArray, alpha: float, correction: Correction) -> float:
    """Per-comparison alpha for the intervals of a family with ``adjusted`` p-values."""
    m = adjusted.size
    if m == 0 or correction == "none":
        return alpha
    if correction == "holm":
        return alpha / m
    rejected = int(np.count_nonzero(adjusted <= alpha))
    return alpha * max(rejected, 1) / m
