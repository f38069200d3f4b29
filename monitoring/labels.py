"""Labels for a window's predictions, joined from outcome events by unit.

A prediction's label is the **first** outcome event of the monitor's label metric for the
row's `unit_id` with `ts` in `[prediction ts, prediction ts + attribution_seconds)`.
Rows without a unit id, or whose label has not arrived (yet), stay unlabelled (NaN):
nothing is zero-filled, so a client sends `value 0` for "did not convert". Two predictions
of one unit before one outcome both take it (each prediction's own first later outcome).

Only the metric's events in `[window start, window end + attribution)` are read (one
range query on `ix_outcome_events_metric_unit_ts`), then joined in pandas with
`merge_asof(by=unit, direction="forward")`: for each prediction the nearest later event of
its unit, kept when it is strictly inside the attribution window.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.events import OutcomeEvent
from atoll.monitoring.quality_schemas import LabelSpec
from atoll.monitoring.windows import Window

_ROW, _LABEL_TS = "_row", "_label_ts"


def read_outcomes(
    session: Session, *, metric: str, start: datetime, end: datetime, attribution: timedelta
) -> pd.DataFrame:
    """The metric's outcome events that may label predictions made in [start, end)."""
    rows = session.execute(
        select(OutcomeEvent.unit_id, OutcomeEvent.ts, OutcomeEvent.value)
        .where(
            OutcomeEvent.metric == metric,
            OutcomeEvent.ts >= start,
            OutcomeEvent.ts < end + attribution,
        )
        .order_by(OutcomeEvent.ts, OutcomeEvent.id)
    ).all()
    return pd.DataFrame(rows, columns=["unit_id", "ts", "value"])


def _utc_ns(values: pd.Series) -> npt.NDArray[np.int64]:
    """Timestamps as UTC nanoseconds (datetime64 without objects: fast to sort and compare)."""
    naive = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    nanoseconds: npt.NDArray[np.int64] = naive.to_numpy(dtype="datetime64[ns]").view(np.int64)
    return nanoseconds


def join_labels(predictions: pd.DataFrame, outcomes: pd.DataFrame, attribution: timedelta) -> pd.Series:
    """One label per prediction row (`ts`, `unit_id`), in its order; NaN where none arrived.

    `outcomes` has `unit_id`, `ts`, `value`, in arrival order for equal timestamps. Units are
    factorized together into integer codes first (merge_asof's `by` on ints, not strings).
    """
    labels = pd.Series(np.nan, index=predictions.index, dtype="float64")
    if predictions.empty or outcomes.empty:
        return labels
    units = pd.concat([predictions["unit_id"], outcomes["unit_id"]], ignore_index=True)
    codes, _ = pd.factorize(units.astype(str).where(units.notna()))  # -1: no unit id
    left_codes, right_codes = codes[: len(predictions)], codes[len(predictions) :]
    left = pd.DataFrame(
        {"ts": _utc_ns(predictions["ts"]), "unit": left_codes, _ROW: np.arange(len(predictions))}
    )
    left = left[left_codes >= 0]
    right = pd.DataFrame(
        {
            _LABEL_TS: _utc_ns(outcomes["ts"]),
            "unit": right_codes,
            "value": outcomes["value"].to_numpy(dtype=np.float64),
        }
    )
    # The first event of a unit at one instant wins (arrival order), as "first" says.
    right = right[right_codes >= 0].drop_duplicates(subset=[_LABEL_TS, "unit"], keep="first")
    if left.empty or right.empty:
        return labels
    window = int(attribution.total_seconds() * 1_000_000_000)
    joined = pd.merge_asof(
        left.sort_values("ts", kind="stable"),
        right.sort_values(_LABEL_TS, kind="stable"),
        left_on="ts",
        right_on=_LABEL_TS,
        by="unit",
        direction="forward",
        allow_exact_matches=True,
        tolerance=window,
    )
    found = joined[joined[_LABEL_TS].notna() & (joined[_LABEL_TS] - joined["ts"] < window)]
    labels.iloc[found[_ROW].to_numpy()] = found["value"].to_numpy()
    return labels


def attach_labels(
    session: Session, window: Window, spec: LabelSpec, *, start: datetime, end: datetime
) -> Window:
    """The window with the label column (`spec.column`) joined in; NaN where unlabelled."""
    attribution = timedelta(seconds=spec.attribution_seconds)
    if len(window) == 0:
        return window
    outcomes = read_outcomes(session, metric=spec.metric, start=start, end=end, attribution=attribution)
    labels = join_labels(window.served_by[["ts", "unit_id"]], outcomes, attribution)
    features = window.features.assign(**{spec.column: labels.to_numpy()})
    return dataclasses.replace(window, features=features)
