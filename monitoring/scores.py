"""Each method's score, computed the way Evidently 0.7.23 computes it, from prepared values.

Source of each formula (``evidently/legacy/calculations/stattests/``):

- ``ks``: ``scipy.stats.ks_2samp(reference, current)`` p-value (called as is).
- ``wasserstein``: ``scipy.stats.wasserstein_distance`` divided by
  ``max(np.std(reference), 0.001)``. Computed here from the two *sorted* arrays by one
  merge instead of scipy's two argsorts and a sort of both; the terms and their order are
  scipy's, so the value is bit-identical (ties only add zero-width terms).
- ``chisquare``: goodness of fit of the current counts against the reference proportions
  scaled to the current size (``scipy.stats.chisquare(f_obs, f_exp)``), over the union of
  values; a value unseen in the reference gives ``p = 0``.
- ``z``: two-proportion z-test of "not the first value" (values sorted), pooled variance,
  ``p = 2 * (1 - Phi(|z|))``; ``p = 1`` when both sides hold the same single value.
- ``jensenshannon``, ``psi``, ``kl_div``: over ``get_binned_data``: a numeric column with
  more than 20 distinct reference values is binned into numpy's Sturges bins over
  reference and current together; otherwise one bin per value. Shares are counts over the
  side's values. ``psi`` and ``kl_div`` replace empty bins by ``min(non-zero) / 1e6``
  (when that minimum is <= 1e-4) or else by 1e-4; ``jensenshannon`` keeps them (scipy's
  ``distance.jensenshannon``, natural log).
- ``hellinger``: categorical, over value shares; numeric, over numpy density histograms on
  Sturges bins of the *distinct* values of both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import stats
from scipy.spatial import distance

from atoll.monitoring.errors import DriftInputError
from atoll.monitoring.methods import MethodName
from atoll.monitoring.values import (
    Category,
    CategoryCounts,
    ColumnValues,
    FloatArray,
    NumericValues,
    distinct_sorted,
    runs,
)

#: ``get_binned_data`` bins a numeric column when the reference has more distinct values.
BINNED_ABOVE_DISTINCT = 20
#: Evidently's floor on the reference std that norms the Wasserstein distance.
WASSERSTEIN_STD_FLOOR = 0.001


def score(method: MethodName, reference: ColumnValues, current: ColumnValues) -> float:
    """The p-value or distance of ``method`` (both sides non-empty)."""
    if method == "ks":
        return ks_p_value(_numeric(reference), _numeric(current))
    if method == "wasserstein":
        return wasserstein_normed(_numeric(reference), _numeric(current))
    if method == "chisquare":
        return chisquare_p_value(_counts(reference), _counts(current))
    if method == "z":
        return z_p_value(_counts(reference), _counts(current))
    if method == "hellinger":
        return hellinger(reference, current)
    ref_share, cur_share = binned_shares(reference, current, fill_empty=method != "jensenshannon")
    if method == "jensenshannon":
        return float(distance.jensenshannon(ref_share, cur_share))
    if method == "psi":
        return float(np.sum((ref_share - cur_share) * np.log(ref_share / cur_share)))
    return float(stats.entropy(ref_share, cur_share))  # kl_div


def ks_p_value(reference: NumericValues, current: NumericValues) -> float:
    return float(stats.ks_2samp(reference.sorted_values, current.sorted_values).pvalue)


def wasserstein_distance_sorted(u: FloatArray, v: FloatArray) -> float:
    """Wasserstein-1 distance of two empirical distributions given as sorted arrays.

    scipy's sum of ``|F_u - F_v| * gap`` over the merged sorted values, where the CDFs count
    each side's values so far. The merge places each ``u`` after the ``v`` values equal to
    it (one search per ``u``, the smaller side here); inside a run of equal values the gap
    is zero, so the order within a tie does not change the sum.
    """
    m, n = u.size, v.size
    at = np.searchsorted(v, u, side="right") + np.arange(m)  # where each u lands in the merge
    from_u = np.zeros(m + n, dtype=bool)
    from_u[at] = True
    merged = np.empty(m + n, dtype=np.float64)
    merged[at] = u
    merged[~from_u] = v
    u_seen = np.cumsum(from_u[:-1])
    v_seen = np.arange(1, m + n) - u_seen
    return float(np.dot(np.abs(u_seen / m - v_seen / n), np.diff(merged)))


def wasserstein_normed(reference: NumericValues, current: NumericValues) -> float:
    if reference.std is None:
        raise ValueError("the reference values carry no std (build them with with_std=True)")
    norm = max(reference.std, WASSERSTEIN_STD_FLOOR)
    return wasserstein_distance_sorted(reference.sorted_values, current.sorted_values) / norm


def chisquare_p_value(reference: Mapping[Category, int], current: Mapping[Category, int]) -> float:
    keys = list(reference.keys() | current.keys())
    scale = sum(current.values()) / sum(reference.values())
    expected = [reference.get(key, 0) * scale for key in keys]
    observed = [current.get(key, 0) for key in keys]
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(stats.chisquare(observed, expected).pvalue)


def z_p_value(reference: Mapping[Category, int], current: Mapping[Category, int]) -> float:
    if len(reference) == 1 and len(current) == 1 and next(iter(reference)) == next(iter(current)):
        return 1.0
    try:
        first = sorted(reference.keys() | current.keys())[0]
    except TypeError as exc:
        raise DriftInputError(
            f"the z-test sorts a column's values and these cannot be compared ({exc}); "
            "use one type per categorical column"
        ) from exc
    n1, n2 = sum(reference.values()), sum(current.values())
    p1 = float(n1 - reference.get(first, 0)) / n1
    p2 = float(n2 - current.get(first, 0)) / n2
    pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - stats.norm.cdf(np.abs(z))))


def binned_shares(
    reference: ColumnValues, current: ColumnValues, *, fill_empty: bool
) -> tuple[FloatArray, FloatArray]:
    """Evidently's ``get_binned_data``: per-bin shares of reference and current."""
    if (
        isinstance(reference, NumericValues)
        and isinstance(current, NumericValues)
        and distinct_sorted(reference.sorted_values).size > BINNED_ABOVE_DISTINCT
    ):
        lo = min(reference.sorted_values[0], current.sorted_values[0])
        hi = max(reference.sorted_values[-1], current.sorted_values[-1])
        edges = sturges_edges(lo, hi, reference.count + current.count, reference.integer and current.integer)
        ref_share = histogram_sorted(reference.sorted_values, edges) / reference.count
        cur_share = histogram_sorted(current.sorted_values, edges) / current.count
    else:
        ref_counts, cur_counts = _counts(reference), _counts(current)
        keys = list(ref_counts.keys() | cur_counts.keys())
        ref_share = np.array([ref_counts.get(k, 0) / reference.count for k in keys])
        cur_share = np.array([cur_counts.get(k, 0) / current.count for k in keys])
    if fill_empty:
        _fill_empty(ref_share)
        _fill_empty(cur_share)
    return ref_share, cur_share


def _fill_empty(shares: FloatArray) -> None:
    smallest = float(shares[shares != 0].min())
    shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001


def sturges_edges(lo: float, hi: float, size: int, integer: bool) -> FloatArray:
    """``np.histogram_bin_edges(data, "sturges")`` from the data's min, max, size and dtype."""
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    width = (hi - lo) / (np.log2(size) + 1.0)
    bins = 1
    if width:
        if integer and width < 1:
            width = 1
        bins = int(np.ceil((last - first) / width))
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


def histogram_sorted(values: FloatArray, edges: FloatArray) -> FloatArray:
    """``np.histogram(values, edges)[0]`` for sorted values (last bin closed), in O(bins log n)."""
    cut = np.concatenate(
        (np.searchsorted(values, edges[:-1], side="left"), np.searchsorted(values, edges[-1:], side="right"))
    )
    return np.diff(cut).astype(np.float64)


def hellinger(reference: ColumnValues, current: ColumnValues) -> float:
    if isinstance(reference, NumericValues) and isinstance(current, NumericValues):
        return _hellinger_numeric(reference, current)
    ref_counts, cur_counts = _counts(reference), _counts(current)
    n1, n2 = reference.count, current.count
    overlap = 0.0
    for key in ref_counts.keys() | cur_counts.keys():
        overlap += math.sqrt(float(ref_counts.get(key, 0) / n1) * float(cur_counts.get(key, 0) / n2))
    return math.sqrt(1 - float(np.clip(overlap, 0, 1)))


def _hellinger_numeric(reference: NumericValues, current: NumericValues) -> float:
    keys = np.union1d(distinct_sorted(reference.sorted_values), distinct_sorted(current.sorted_values))
    edges = sturges_edges(keys[0], keys[-1], keys.size, reference.integer and current.integer)
    widths = np.diff(edges).astype(float)
    ref_counts = histogram_sorted(reference.sorted_values, edges)
    cur_counts = histogram_sorted(current.sorted_values, edges)
    ref_density = ref_counts / widths / ref_counts.sum()
    cur_density = cur_counts / widths / cur_counts.sum()
    bin_width = (edges.max() - edges.min()) / (edges.size - 1)
    overlap = 0.0
    for p1, p2 in zip(ref_density.tolist(), cur_density.tolist(), strict=True):
        overlap += math.sqrt(p1 * p2) * bin_width
    return math.sqrt(1 - float(np.clip(overlap, 0, 1)))


def _numeric(values: ColumnValues) -> NumericValues:
    if not isinstance(values, NumericValues):
        raise TypeError("this method needs numeric values")
    return values


def _counts(values: ColumnValues) -> Mapping[Category, int]:
    return values.counts if isinstance(values, CategoryCounts) else runs(values.sorted_values)
