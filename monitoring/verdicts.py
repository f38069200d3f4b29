"""Per-column results -> dataset verdicts: Evidently's drift-share rule, and the same rule after
a Benjamini-Hochberg correction of the p-value columns.

Evidently tests each column at its own threshold, so with 25 columns at p < 0.05 a window
drawn from the reference itself flags one column or more most of the time. The corrected
verdict adjusts the p-values of the p-value columns (ks, chisquare, z) together with
Benjamini-Hochberg at ``fdr_level`` and flags those with an adjusted p-value at or below
it; distance columns (wasserstein, jensenshannon, psi, ...) have no p-value and keep their
verdict. Both dataset verdicts apply Evidently's rule (drifted share >= ``drift_share``)
over the columns that have a verdict; ``spec.alert_rule`` picks the one that sets the
status. See docs/monitoring.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from atoll.monitoring.schemas import ColumnDrift, DatasetVerdict, DriftResult, DriftSpec, RunStatus


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (scipy's ``false_discovery_control``), in the given order."""
    if not p_values:
        return []
    return [float(p) for p in stats.false_discovery_control(np.asarray(p_values, dtype=float), method="bh")]


def with_corrections(columns: Sequence[ColumnDrift], fdr_level: float) -> list[ColumnDrift]:
    """Fill ``adjusted_p_value`` and ``drifted_corrected`` of each column."""
    family = [i for i, c in enumerate(columns) if c.drifted is not None and _finite_p_value(c)]
    adjusted = dict(zip(family, benjamini_hochberg([columns[i].score or 0.0 for i in family]), strict=True))
    out = []
    for i, column in enumerate(columns):
        corrected: bool | None
        if i in adjusted:
            corrected = adjusted[i] <= fdr_level
        elif column.drifted is None or column.score_type == "distance":
            corrected = column.drifted
        else:
            corrected = False  # a NaN p-value: Evidently's verdict is "no drift" too
        update = {"adjusted_p_value": adjusted.get(i), "drifted_corrected": corrected}
        out.append(column.model_copy(update=update))
    return out


def _finite_p_value(column: ColumnDrift) -> bool:
    return column.p_value is not None and not math.isnan(column.p_value)


def dataset_verdict(flags: Sequence[bool], drift_share: float) -> DatasetVerdict:
    drifted = sum(flags)
    share = drifted / len(flags)
    return DatasetVerdict(
        tested_columns=len(flags), drifted_columns=drifted, share=share, drifted=share >= drift_share
    )


def summarize(
    columns: Sequence[ColumnDrift], spec: DriftSpec, *, reference_rows: int, current_rows: int
) -> DriftResult:
    corrected_columns = with_corrections(columns, spec.fdr_level)
    tested = [c for c in corrected_columns if c.drifted is not None]
    evidently = corrected = None
    status: RunStatus = "no_data"
    if tested and current_rows:
        evidently = dataset_verdict([bool(c.drifted) for c in tested], spec.drift_share)
        corrected = dataset_verdict([bool(c.drifted_corrected) for c in tested], spec.drift_share)
        chosen = evidently if spec.alert_rule == "evidently" else corrected
        status = "drift" if chosen.drifted else "ok"
    return DriftResult(
        status=status,
        alert_rule=spec.alert_rule,
        drift_share_threshold=spec.drift_share,
        fdr_level=spec.fdr_level,
        reference_rows=reference_rows,
        current_rows=current_rows,
        columns=tuple(corrected_columns),
        evidently=evidently,
        corrected=corrected,
    )
