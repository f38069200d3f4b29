"""What a monitor is told about labels (`LabelSpec`) and what a run answers about model quality.

Labels arrive as outcome events (`POST /api/v1/events/outcomes`): the first event of
`metric` for a prediction's unit within `attribution_seconds` after the prediction is its
label (see `labels.py`). With labels a run also tests the label column for drift (target
drift, when the drift spec lists `column`) and computes model quality (see `quality.py`).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Task = Literal["classification", "regression"]
ClassificationMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
RegressionMetric = Literal["mae", "rmse", "r2", "mean_error"]
QualityMetric = ClassificationMetric | RegressionMetric
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS: tuple[str, ...] = ("mae", "rmse", "r2", "mean_error")
#: Lower is better for these; `mean_error` (bias) is judged by its absolute value.
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
#: Below this many labelled rows a run reports "not enough labels" and never alerts on quality.
DEFAULT_MIN_LABELS = 30
#: ok: no threshold crossed; breach: a `max_drop` crossed; not_enough_labels: fewer labelled
#: rows than `min_labels`; no_reference: thresholds set but the reference has no quality to
#: compare with (it lacks the `prediction` or the label column).
QualityStatus = Literal["ok", "breach", "not_enough_labels", "no_reference"]
RESERVED_COLUMNS = frozenset({"prediction"})


class LabelSpec(BaseModel):
    """Where a monitor finds ground truth and how it judges model quality."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    metric: str = Field(
        min_length=1, max_length=128, description="The outcome metric whose events carry the label"
    )
    task: Task
    column: str = Field(
        default="target",
        min_length=1,
        max_length=255,
        description="The label column's name in the reference set and the window",
    )
    attribution_seconds: int = Field(
        default=86400,
        ge=1,
        le=31 * 86400,
        description="How long after a prediction its label may arrive",
    )
    positive_label: float = Field(
        default=1.0, description="Classification: the positive class for precision, recall, F1, AUC"
    )
    threshold: float | None = Field(
        default=None,
        description="Classification: the prediction is a score of the positive class; "
        "score >= threshold predicts it (enables ROC AUC and log loss)",
    )
    min_labels: int = Field(
        default=DEFAULT_MIN_LABELS, ge=1, description="Fewer labelled rows: 'not enough labels'"
    )
    max_drop: dict[QualityMetric, float] = Field(
        default_factory=dict,
        description="Alert when a metric is worse than the reference's by more than this "
        "(e.g. {accuracy: 0.05}; for mae, rmse, log_loss: higher by more than this)",
    )

    @model_validator(mode="after")
    def _fits_task(self) -> Self:
        if self.column in RESERVED_COLUMNS:
            raise ValueError(
                f"column: {self.column!r} is the logged prediction; name the label column otherwise"
            )
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        wrong = sorted(m for m in self.max_drop if m not in allowed)
        if wrong:
            raise ValueError(f"max_drop: {wrong} do not apply to {self.task}; use some of {list(allowed)}")
        negative = sorted(m for m, v in self.max_drop.items() if v < 0)
        if negative:
            raise ValueError(f"max_drop: {negative} must be >= 0 (a drop, not a gain)")
        if self.task == "regression" and self.threshold is not None:
            raise ValueError("threshold: only classification turns a score into a class")
        scored = sorted(m for m in ("roc_auc", "log_loss") if m in self.max_drop)
        if scored and self.threshold is None:
            raise ValueError(
                f"max_drop: {scored} need a score; set threshold so the prediction is read as one"
            )
        return self

    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS


class QualityRead(BaseModel):
    """Model quality of one run row (all traffic or one group), current beside reference."""

    task: Task
    status: QualityStatus
    rows: int = Field(description="rows of the window (or group)")
    labelled: int = Field(description="rows whose label arrived (and that have a prediction)")
    coverage: float | None = Field(description="labelled / rows")
    min_labels: int
    current: dict[str, float | None] = Field(description="metric -> value on the labelled rows")
    reference: dict[str, float | None] | None = Field(
        description="the same metrics on the reference set, when it holds `prediction` and the label"
    )
    reference_rows: int | None = None
    drop: dict[str, float | None] = Field(
        default_factory=dict, description="how much worse than the reference (positive: worse)"
    )
    breached: list[str] = Field(default_factory=list, description="metrics past their max_drop")
    message: str | None = None
