"""A window of an endpoint's inference log as a DataFrame: what a drift run checks.

Rows are read with keyset pagination (`id > last ORDER BY id LIMIT n`), selecting only the
columns a run needs, never one ORM object per row. Only successful requests (2xx) with
features count. Each row's `features` JSON becomes the feature columns; the sampled row's
label (`prediction.value`) becomes the column `prediction`. Beside the features, a
`Window` keeps who served each row: deployment, backend, A/B arm (the deployment, until
the A/B arms of abtest/ are recorded on inference rows) and model version, and when and
for which unit it was served (`ts`, `unit_id`: what labels join on, see labels.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.events import InferenceEvent

PREDICTION_COLUMN = "prediction"
CHUNK_ROWS = 20_000
#: A window stops growing here; the run says so in its message. 2M rows x 25 columns is
#: about 0.4 GB as float64 and takes the engine a few seconds.
MAX_WINDOW_ROWS = 2_000_000
GROUP_COLUMNS = ("deployment", "backend", "arm")
SERVED_COLUMNS = ("model_name", "model_version", "ts", "unit_id")


@dataclass(frozen=True)
class Window:
    features: pd.DataFrame  # one column per feature, plus `prediction` when labels were logged
    #: same index: deployment, backend, arm, model_name, model_version, ts, unit_id
    served_by: pd.DataFrame
    truncated: bool

    def __len__(self) -> int:
        return len(self.features)

    def groups(self, split_by: Sequence[str]) -> Iterator[tuple[dict[str, str | None], Window]]:
        """One sub-window per distinct value of the `split_by` columns (none: nothing)."""
        if not split_by or len(self) == 0:
            return
        keys = list(split_by)
        for values, index in self.served_by.groupby(keys, dropna=False, sort=True).indices.items():
            labels = values if isinstance(values, tuple) else (values,)
            group = {key: (None if pd.isna(v) else str(v)) for key, v in zip(keys, labels, strict=True)}
            yield (
                group,
                Window(self.features.iloc[index], self.served_by.iloc[index], self.truncated),
            )

    def model_versions(self) -> list[tuple[str, int]]:
        """The registered versions that served rows of this window."""
        pairs = self.served_by[["model_name", "model_version"]].dropna().drop_duplicates()
        found = []
        for name, version in pairs.itertuples(index=False):
            if str(version).isdigit():
                found.append((str(name), int(version)))
        return sorted(found)


def group_key(group: dict[str, str | None]) -> str:
    return ",".join(f"{key}={group[key] or '-'}" for key in GROUP_COLUMNS if key in group)


def _rows(
    session: Session, endpoint: str, start: datetime, end: datetime, chunk_rows: int, max_rows: int
) -> Iterator[Sequence[Any]]:
    columns = (
        InferenceEvent.id,
        InferenceEvent.deployment,
        InferenceEvent.backend,
        InferenceEvent.model_name,
        InferenceEvent.model_version,
        InferenceEvent.features,
        InferenceEvent.prediction,
        InferenceEvent.ts,
        InferenceEvent.unit_id,
    )
    last_id, read = 0, 0
    while read < max_rows:
        chunk = session.execute(
            select(*columns)
            .where(
                InferenceEvent.endpoint == endpoint,
                InferenceEvent.ts >= start,
                InferenceEvent.ts < end,
                InferenceEvent.status >= 200,
                InferenceEvent.status < 300,
                InferenceEvent.id > last_id,
            )
            .order_by(InferenceEvent.id)
            .limit(min(chunk_rows, max_rows - read))
        ).all()
        if not chunk:
            return
        yield from chunk
        read += len(chunk)
        last_id = chunk[-1][0]
        if len(chunk) < chunk_rows:
            return


def load_window(
    session: Session,
    *,
    endpoint: str,
    start: datetime,
    end: datetime,
    chunk_rows: int = CHUNK_ROWS,
    max_rows: int = MAX_WINDOW_ROWS,
) -> Window:
    """The endpoint's 2xx inference rows with features in [start, end)."""
    features: list[dict[str, Any]] = []
    served: list[tuple[Any, ...]] = []
    read = 0
    for _id, deployment, backend, model_name, model_version, row, prediction, ts, unit_id in _rows(
        session, endpoint, start, end, chunk_rows, max_rows
    ):
        read += 1
        if not isinstance(row, dict):
            continue
        if isinstance(prediction, dict) and "value" in prediction:
            row = {**row, PREDICTION_COLUMN: prediction["value"]}
        features.append(row)
        served.append((deployment, backend, deployment, model_name, model_version, ts, unit_id))
    return Window(
        features=frame_of(features),
        served_by=pd.DataFrame(served, columns=[*GROUP_COLUMNS, *SERVED_COLUMNS]),
        truncated=read >= max_rows,
    )


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Feature dicts to a DataFrame; a list-valued feature (e.g. class probabilities) is dropped."""
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    nested = [c for c in frame.columns if frame[c].dtype == object and frame[c].map(_is_nested).any()]
    return frame.drop(columns=nested) if nested else frame


def _is_nested(value: Any) -> bool:
    return isinstance(value, (list, dict))
