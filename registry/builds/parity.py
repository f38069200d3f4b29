"""Parity of a build against the original model: pure numpy, no I/O.

The numbers a build records:

- `max_abs_diff`: the largest |candidate - reference| over every output value (class
  probabilities for classifiers, predictions for regressors).
- `max_scaled_diff`: the largest |candidate - reference| / max(1, |reference|). It equals
  the absolute difference for values within [-1, 1] (probabilities, always) and is the
  relative difference beyond, so a regressor predicting prices in the thousands is held to
  the same number of significant digits as one predicting values near 1. **This is what the
  catalog's `parity.max_abs_diff` is compared with** (like `numpy.isclose` with
  atol = rtol = threshold).
- `label_agreement`: the share of rows whose predicted label is the same (classifiers only),
  compared with `parity.min_label_agreement`.

A NaN on one side only counts as an infinite difference; NaN on both sides as none.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

SAMPLE_ROWS = 256
SAMPLE_SEED = 20261127


@dataclass(frozen=True)
class Diff:
    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    max_scaled_diff: float
    label_agreement: float | None  # None: no labels (a regressor)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]  # one line per failed threshold; empty when passed


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else float("inf")


def _as_matrix(values: NDArray[Any], rows: int) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[0] != rows:
        raise ValueError(f"expected {rows} rows of outputs, got shape {array.shape}")
    return array.reshape(rows, -1) if rows else array.reshape(0, int(np.prod(array.shape[1:])))


def agreement(reference: NDArray[Any], candidate: NDArray[Any]) -> float:
    """Share of equal labels; labels of different kinds (1 vs "1") compare as text."""
    ref, cand = np.asarray(reference).ravel(), np.asarray(candidate).ravel()
    if ref.shape != cand.shape:
        raise ValueError(f"label counts differ: {ref.shape[0]} vs {cand.shape[0]}")
    if ref.size == 0:
        return 1.0
    numeric = ref.dtype.kind in "biuf" and cand.dtype.kind in "biuf"
    same = ref == cand if numeric else ref.astype(str) == cand.astype(str)
    return float(np.mean(same))


def compare(
    reference: NDArray[Any],
    candidate: NDArray[Any],
    *,
    reference_labels: NDArray[Any] | None = None,
    candidate_labels: NDArray[Any] | None = None,
) -> Diff:
    """Compare two models' outputs on the same rows (first axis = rows)."""
    rows = int(np.asarray(reference).shape[0]) if np.asarray(reference).ndim else 0
    ref = _as_matrix(reference, rows)
    cand = _as_matrix(candidate, rows)
    if ref.shape != cand.shape:
        raise ValueError(f"output shapes differ: reference {ref.shape}, candidate {cand.shape}")
    both_nan = np.isnan(ref) & np.isnan(cand)
    diff = np.where(both_nan, 0.0, np.abs(cand - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = np.maximum(1.0, np.abs(np.nan_to_num(ref, nan=0.0, posinf=1.0, neginf=1.0)))
    labels = None
    if reference_labels is not None and candidate_labels is not None:
        labels = agreement(reference_labels, candidate_labels)
    if diff.size == 0:
        return Diff(
            rows=rows, max_abs_diff=0.0, mean_abs_diff=0.0, max_scaled_diff=0.0, label_agreement=labels
        )
    return Diff(
        rows=rows,
        max_abs_diff=_finite(diff.max()),
        mean_abs_diff=_finite(diff.mean()),
        max_scaled_diff=_finite((diff / scale).max()),
        label_agreement=labels,
    )


def combine(diffs: list[Diff]) -> Diff:
    """One Diff over several row sets (maxima of maxima, row-weighted means)."""
    if not diffs:
        raise ValueError("nothing to combine")
    rows = sum(d.rows for d in diffs)
    weight = [d.rows / rows if rows else 1 / len(diffs) for d in diffs]
    labelled = [d for d in diffs if d.label_agreement is not None]
    labels = None
    if labelled:
        labelled_rows = sum(d.rows for d in labelled)
        labels = (
            sum(d.label_agreement * d.rows for d in labelled if d.label_agreement is not None) / labelled_rows
            if labelled_rows
            else 1.0
        )
    return Diff(
        rows=rows,
        max_abs_diff=max(d.max_abs_diff for d in diffs),
        mean_abs_diff=float(sum(w * d.mean_abs_diff for w, d in zip(weight, diffs, strict=True))),
        max_scaled_diff=max(d.max_scaled_diff for d in diffs),
        label_agreement=labels,
    )


def judge(diff: Diff, *, max_abs_diff: float, min_label_agreement: float) -> Verdict:
    """Hold a Diff to a backend's thresholds; every failed threshold gives its numbers."""
    reasons = []
    if not diff.max_scaled_diff <= max_abs_diff:
        reasons.append(
            f"max diff {diff.max_scaled_diff:.3g} exceeds {max_abs_diff:g} "
            f"(max abs diff {diff.max_abs_diff:.3g} over {diff.rows} rows)"
        )
    if diff.label_agreement is not None and diff.label_agreement < min_label_agreement:
        reasons.append(
            f"label agreement {diff.label_agreement:.4%} is below {min_label_agreement:.4%} "
            f"over {diff.rows} rows"
        )
    return Verdict(passed=not reasons, reasons=reasons)


def sample_around(
    example: NDArray[Any],
    *,
    rows: int = SAMPLE_ROWS,
    seed: int = SAMPLE_SEED,
    integer_columns: list[bool] | None = None,
) -> NDArray[np.float64]:
    """`rows` rows drawn around an input example, reproducibly (seeded).

    Each column is normal around the example's column mean with the example's column
    standard deviation; where the example cannot show a spread (one row, or a constant
    column) the spread is 10% of the mean's magnitude, or 1 when the mean is 0. Integer
    columns are rounded, and a column whose example values (two rows or more) are all within [0, 1] stays
    within [0, 1] (clipped), so flags and proportions remain plausible.
    """
    data = np.asarray(example, dtype=np.float64)
    if data.ndim == 1:
        data = data.reshape(1, -1)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"the example must be a non-empty table of rows, got shape {data.shape}")
    finite = np.where(np.isfinite(data), data, np.nan)
    with warnings.catch_warnings():  # an all-NaN column: mean 0, spread 1 below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(finite, axis=0), nan=0.0)
        spread = np.nan_to_num(np.nanstd(finite, axis=0), nan=0.0)
    fallback = np.where(mean != 0, 0.1 * np.abs(mean), 1.0)
    spread = np.where(spread > 0, spread, fallback)
    rng = np.random.default_rng(seed)
    drawn = rng.normal(mean, spread, size=(rows, data.shape[1]))
    unit = np.all((finite >= 0) & (finite <= 1), axis=0) & (data.shape[0] > 1)
    drawn[:, unit] = np.clip(drawn[:, unit], 0.0, 1.0)
    integers = (
        np.asarray(integer_columns, dtype=bool)
        if integer_columns is not None
        else np.all(np.isfinite(data) & (data == np.round(data)), axis=0) & (data.shape[0] > 1)
    )
    drawn[:, integers] = np.round(drawn[:, integers])
    return drawn


def median_ms(seconds: list[float]) -> float:
    """Median of timings given in seconds, in milliseconds."""
    if not seconds:
        raise ValueError("no timings")
    return float(np.median(np.asarray(seconds)) * 1000.0)
