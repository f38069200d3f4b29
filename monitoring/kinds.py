"""A column's kind when the monitor does not state it: Evidently's own inference.

This is ``infer_column_type`` of ``evidently/core/datasets.py`` (0.7.23), applied to the
reference set: floats are numeric; integers numeric above 10 distinct values and
categorical at or below; booleans, pandas categoricals and strings categorical, unless a
string column has more distinct values than half its non-null count (Evidently calls that
text). Text, datetime and other columns have no drift method here: they are reported so
the monitor can state a kind or leave them out.
"""

from __future__ import annotations

import pandas as pd

from atoll.monitoring.errors import DriftInputError
from atoll.monitoring.methods import ColumnKind
from atoll.monitoring.schemas import ColumnSpec

#: Evidently's ``INTEGER_CARDINALITY_LIMIT``.
INTEGER_CATEGORY_LIMIT = 10


def infer_kind(series: pd.Series) -> ColumnKind | None:
    """``numeric``, ``categorical``, or None where Evidently would not test the column for drift
    as either (text, datetime, lists, unknown)."""
    dtype = series.dtype.name
    if dtype.startswith("float"):
        return "numeric"
    if dtype.startswith("int"):
        return "categorical" if series.nunique() <= INTEGER_CATEGORY_LIMIT else "numeric"
    if dtype in ("string", "str"):
        return None if series.nunique() > series.count() * 0.5 else "categorical"
    if dtype == "object":
        present = series.dropna()
        if present.empty or not (isinstance(present.iloc[0], str) and isinstance(present.iloc[-1], str)):
            return None
        return None if series.nunique() > series.count() * 0.5 else "categorical"
    if dtype in ("bool", "category"):
        return "categorical"
    return None


def infer_columns(reference: pd.DataFrame) -> list[ColumnSpec]:
    """A ``ColumnSpec`` (method ``auto``) per column of the reference, or an error naming
    the columns whose kind must be stated."""
    specs, unknown = [], []
    for name in reference.columns:
        kind = infer_kind(reference[name])
        if kind is None:
            unknown.append(f"{name} ({reference[name].dtype})")
        else:
            specs.append(ColumnSpec(name=str(name), kind=kind))
    if unknown:
        raise DriftInputError(
            "cannot tell numeric from categorical for these columns (Evidently would treat them as "
            f"text, dates or unknown): {unknown}; state their kind or leave them out"
        )
    return specs
