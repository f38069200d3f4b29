"""Small reference-vs-window histograms for the portal's per-feature table (shares, not counts).

Numeric: ten equal-width bins over the reference's range (window values outside it fall
in the end bins). Categorical: the reference's eight most frequent values and "other".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from atoll.monitoring.values import (
    CategoryCounts,
    ColumnValues,
    NumericValues,
    category_counts,
    numeric_values,
)

BINS = 10
TOP_CATEGORIES = 8
OTHER = "other"


def _shares(counts: np.ndarray[Any, Any]) -> list[float]:
    total = float(counts.sum())
    return [round(float(c) / total, 4) if total else 0.0 for c in counts]


def histogram(reference: ColumnValues, series: pd.Series) -> dict[str, Any] | None:
    """None when the reference has no value to bin."""
    if reference.count == 0:
        return None
    if isinstance(reference, NumericValues):
        return _numeric(reference, numeric_values(series).sorted_values)
    assert isinstance(reference, CategoryCounts)
    return _categorical(reference, category_counts(series))


def _numeric(reference: NumericValues, current: np.ndarray[Any, Any]) -> dict[str, Any]:
    low, high = float(reference.sorted_values[0]), float(reference.sorted_values[-1])
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, BINS + 1)
    ref_counts = np.histogram(reference.sorted_values, bins=edges)[0]
    cur_counts = np.histogram(np.clip(current, low, high), bins=edges)[0]
    labels = [f"{edges[i]:.3g}" for i in range(BINS)]
    return {"labels": labels, "reference": _shares(ref_counts), "current": _shares(cur_counts)}


def _categorical(reference: CategoryCounts, current: CategoryCounts) -> dict[str, Any]:
    top = sorted(reference.counts, key=lambda k: -reference.counts[k])[:TOP_CATEGORIES]
    rest_ref = sum(c for k, c in reference.counts.items() if k not in top)
    rest_cur = sum(c for k, c in current.counts.items() if k not in top)
    ref = [reference.counts[k] for k in top] + [rest_ref]
    cur = [current.counts.get(k, 0) for k in top] + [rest_cur]
    return {
        "labels": [str(k) for k in top] + [OTHER],
        "reference": _shares(np.asarray(ref)),
        "current": _shares(np.asarray(cur)),
    }
