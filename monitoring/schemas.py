"""What a drift check is asked (``DriftSpec``) and what it answers (``DriftResult``).

A spec names each column with its kind and, optionally, a method and threshold from
:mod:`atoll.monitoring.methods` (``auto`` = what Evidently chooses), plus the dataset's
drift-share threshold. The same models describe the fast engine's results and the ones
parsed from Evidently's own report, so the two can be compared field by field.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from atoll.monitoring.methods import METHODS, ColumnKind, MethodChoice, MethodName, ScoreType

#: ``tested``: a verdict was computed. ``constant``: tested, but the reference holds a
#: single value (distance tests then measure against a degenerate distribution; a
#: Wasserstein distance is normed by Evidently's floor of 0.001 instead of the std).
#: ``all_null``: the reference or the window has no non-null value, so there is no verdict
#: (Evidently itself raises on such a column).
ColumnStatus = Literal["tested", "constant", "all_null"]
#: ``no_data``: an empty window (or no column with data): no verdict and no alert.
RunStatus = Literal["ok", "drift", "no_data"]
#: Which dataset verdict sets ``DriftResult.status`` (see docs/monitoring.md).
AlertRule = Literal["evidently", "corrected"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class ColumnSpec(_Strict):
    name: str = Field(min_length=1)
    kind: ColumnKind
    method: MethodChoice = "auto"
    threshold: float | None = Field(
        default=None, gt=0, description="drift threshold; the method's default when omitted"
    )

    @model_validator(mode="after")
    def _method_fits(self) -> Self:
        if self.method == "auto":
            if self.threshold is not None and self.threshold >= 1:
                raise ValueError(
                    f"column {self.name!r}: with method 'auto' the threshold may be applied to a "
                    f"p-value, so it must be < 1 (got {self.threshold}); name a distance method to use more"
                )
            return self
        info = METHODS[self.method]
        if self.kind not in info.kinds:
            allowed = sorted(name for name, other in METHODS.items() if self.kind in other.kinds)
            raise ValueError(
                f"column {self.name!r}: method {self.method!r} does not apply to {self.kind} columns; "
                f"use one of {allowed} or 'auto'"
            )
        if info.score_type == "p_value" and self.threshold is not None and self.threshold >= 1:
            raise ValueError(
                f"column {self.name!r}: {self.method!r} compares a p-value, so its threshold must be "
                f"in (0, 1), got {self.threshold}"
            )
        return self

    def threshold_for(self, method: MethodName) -> float:
        """The threshold in force once ``auto`` is resolved to ``method``."""
        return METHODS[method].default_threshold if self.threshold is None else self.threshold


class DriftSpec(_Strict):
    columns: tuple[ColumnSpec, ...] = Field(min_length=1)
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="dataset drift when the drifted share of columns is >= this"
    )
    fdr_level: float = Field(
        default=0.05, gt=0, lt=1, description="Benjamini-Hochberg false discovery rate for p-value columns"
    )
    alert_rule: AlertRule = "evidently"

    @field_validator("columns")
    @classmethod
    def _unique_names(cls, columns: tuple[ColumnSpec, ...]) -> tuple[ColumnSpec, ...]:
        repeated = sorted(name for name, count in Counter(c.name for c in columns).items() if count > 1)
        if repeated:
            raise ValueError(f"columns listed more than once: {repeated}")
        return columns

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


class ColumnDrift(_Strict):
    """One column's answer. ``score`` is a p-value or a distance (see ``score_type``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=True, frozen=True)

    column: str
    kind: ColumnKind
    status: ColumnStatus
    method: MethodName | None = Field(description="None only when there was no data to choose 'auto' by")
    score_type: ScoreType | None
    threshold: float | None
    score: float | None
    drifted: bool | None = Field(description="Evidently's verdict: the method's threshold rule")
    adjusted_p_value: float | None = Field(
        default=None, description="Benjamini-Hochberg adjusted p-value (p-value methods only)"
    )
    drifted_corrected: bool | None = Field(
        default=None, description="BH verdict for p-value methods; the plain verdict for distances"
    )
    reference_values: int = Field(ge=0, description="non-null finite values in the reference")
    current_values: int = Field(ge=0, description="non-null finite values in the window")
    reference_nulls: int = Field(ge=0)
    current_nulls: int = Field(ge=0)
    detail: str | None = None

    @property
    def p_value(self) -> float | None:
        return self.score if self.score_type == "p_value" else None


class DatasetVerdict(_Strict):
    """Drifted share of the columns that have a verdict, against the spec's drift share."""

    tested_columns: int = Field(ge=0)
    drifted_columns: int = Field(ge=0)
    share: float = Field(ge=0, le=1)
    drifted: bool


class DriftResult(_Strict):
    status: RunStatus
    alert_rule: AlertRule
    drift_share_threshold: float
    fdr_level: float
    reference_rows: int = Field(ge=0)
    current_rows: int = Field(ge=0)
    columns: tuple[ColumnDrift, ...]
    evidently: DatasetVerdict | None = Field(description="Evidently's rule over its per-column verdicts")
    corrected: DatasetVerdict | None = Field(
        description="the same rule over the Benjamini-Hochberg-corrected per-column verdicts"
    )

    def column(self, name: str) -> ColumnDrift:
        for result in self.columns:
            if result.column == name:
                return result
        raise KeyError(name)
