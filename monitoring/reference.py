"""The reference profile: what the drift tests need of a reference set, computed once.

Per numeric column the sorted finite values (every numeric test reads them: quantiles for
Wasserstein and KS, counts per Sturges bin, distinct values), their null count, integer
dtype and std; per categorical column the count of each value and the null count. The
profile is all a run needs of the reference, so a monitor stores it (``to_bytes``: an
``.npz`` archive with a JSON header, no pickle) and a run never re-reads the reference.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from atoll.monitoring.errors import DriftInputError
from atoll.monitoring.methods import ColumnKind
from atoll.monitoring.schemas import DriftSpec
from atoll.monitoring.values import (
    Category,
    CategoryCounts,
    ColumnValues,
    NumericValues,
    category_counts,
    numeric_values,
)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ReferenceProfile:
    rows: int
    #: Every column of the reference set, so a window with other columns is caught.
    frame_columns: tuple[str, ...]
    columns: Mapping[str, ColumnValues]

    def kind(self, name: str) -> ColumnKind:
        return "numeric" if isinstance(self.columns[name], NumericValues) else "categorical"

    def to_bytes(self) -> bytes:
        header: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "rows": self.rows,
            "frame_columns": list(self.frame_columns),
            "columns": [],
        }
        arrays: dict[str, Any] = {}  # Any: numpy types savez(**kwds) as bool (its allow_pickle)
        for index, (name, values) in enumerate(self.columns.items()):
            entry: dict[str, Any] = {"name": name, "nulls": values.nulls}
            if isinstance(values, NumericValues):
                entry.update(kind="numeric", integer=values.integer, std=values.std)
                arrays[f"values_{index}"] = values.sorted_values
            else:
                entry.update(kind="categorical", counts=[[k, c] for k, c in values.counts.items()])
            header["columns"].append(entry)
        buffer = io.BytesIO()
        header_bytes = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(buffer, header=header_bytes, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes().decode())
            if header.get("format") != FORMAT_VERSION:
                raise DriftInputError(f"reference profile format {header.get('format')} is not supported")
            columns: dict[str, ColumnValues] = {}
            for index, entry in enumerate(header["columns"]):
                if entry["kind"] == "numeric":
                    columns[entry["name"]] = NumericValues(
                        sorted_values=np.asarray(archive[f"values_{index}"], dtype=np.float64),
                        nulls=entry["nulls"],
                        integer=entry["integer"],
                        std=entry["std"],
                    )
                else:
                    counts: dict[Category, int] = dict(map(tuple, entry["counts"]))
                    columns[entry["name"]] = CategoryCounts(counts=counts, nulls=entry["nulls"])
        return cls(rows=header["rows"], frame_columns=tuple(header["frame_columns"]), columns=columns)


def build_profile(reference: pd.DataFrame, spec: DriftSpec) -> ReferenceProfile:
    """Profile the spec's columns of ``reference`` (by the kinds the spec gives them)."""
    if len(reference) == 0:
        raise DriftInputError("the reference set has no rows")
    missing = [name for name in spec.names if name not in reference.columns]
    if missing:
        raise DriftInputError(f"columns of the spec missing from the reference: {missing}")
    columns: dict[str, ColumnValues] = {}
    for column in spec.columns:
        series = reference[column.name]
        columns[column.name] = (
            numeric_values(series, with_std=True) if column.kind == "numeric" else category_counts(series)
        )
    return ReferenceProfile(
        rows=len(reference), frame_columns=tuple(str(c) for c in reference.columns), columns=columns
    )
