"""Model quality of labelled predictions, current beside reference (exact, sklearn.metrics).

A row counts when it has a label (joined by labels.py, or the reference's label column) and
a numeric `prediction`. Classification (labels are outcome values, so classes are numbers):

- with `threshold`, the prediction is a score of `positive_label`: the class is
  `score >= threshold`; accuracy, precision, recall and F1 of the positive class, ROC AUC
  (when both classes occur) and log loss (when every score is in [0, 1]);
- without, the prediction is the class: accuracy; precision, recall and F1 of
  `positive_label` when at most two classes occur, else macro-averaged over the classes.

Regression: MAE, RMSE, R² (None with fewer than 2 rows or a constant label) and the mean
error `mean(prediction - label)` (bias: positive over-predicts).

Drops compare with the reference: `reference - current` where higher is better,
`current - reference` for MAE, RMSE and log loss, `|current| - |reference|` for the mean
error; positive is worse. A metric whose drop exceeds its `max_drop` breaches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn import metrics as skm

from atoll.monitoring.quality_schemas import LOWER_IS_BETTER, LabelSpec, QualityRead, QualityStatus
from atoll.monitoring.windows import PREDICTION_COLUMN

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Baseline:
    """The reference set's quality, computed once per run."""

    rows: int
    metrics: dict[str, float | None]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def labelled_pairs(frame: pd.DataFrame, spec: LabelSpec) -> tuple[Floats, Floats]:
    """(labels, predictions) of the rows that have both, as floats."""
    if spec.column not in frame.columns or PREDICTION_COLUMN not in frame.columns:
        return np.empty(0), np.empty(0)
    labels = pd.to_numeric(frame[spec.column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    predictions = pd.to_numeric(frame[PREDICTION_COLUMN], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    both = np.isfinite(labels) & np.isfinite(predictions)
    return labels[both], predictions[both]


def _binary(truth: NDArray[np.bool_], predicted: NDArray[np.bool_]) -> dict[str, float | None]:
    return {
        "precision": float(skm.precision_score(truth, predicted, zero_division=0)),
        "recall": float(skm.recall_score(truth, predicted, zero_division=0)),
        "f1": float(skm.f1_score(truth, predicted, zero_division=0)),
    }


def classification_metrics(labels: Floats, predictions: Floats, spec: LabelSpec) -> dict[str, float | None]:
    truth = labels == spec.positive_label
    if spec.threshold is not None:
        predicted = predictions >= spec.threshold
        found: dict[str, float | None] = {
            "accuracy": float(np.mean(truth == predicted)),
            **_binary(truth, predicted),
        }
        both_classes = truth.any() and not truth.all()
        found["roc_auc"] = float(skm.roc_auc_score(truth, predictions)) if both_classes else None
        probabilities = bool(np.all((predictions >= 0) & (predictions <= 1)))
        found["log_loss"] = (
            float(skm.log_loss(truth, predictions, labels=[False, True])) if probabilities else None
        )
        return found
    found = {"accuracy": float(np.mean(labels == predictions))}
    classes = np.union1d(labels, predictions)
    if classes.size <= 2:
        found.update(_binary(truth, predictions == spec.positive_label))
    else:
        for name, score in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            found[name] = float(score(labels, predictions, average="macro", zero_division=0))
    found["roc_auc"] = found["log_loss"] = None
    return found


def regression_metrics(labels: Floats, predictions: Floats) -> dict[str, float | None]:
    errors = predictions - labels
    r2 = None
    if labels.size >= 2 and np.ptp(labels) > 0:
        r2 = _finite(skm.r2_score(labels, predictions))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "r2": r2,
        "mean_error": float(np.mean(errors)),
    }


def metrics_of(labels: Floats, predictions: Floats, spec: LabelSpec) -> dict[str, float | None]:
    if spec.task == "classification":
        return classification_metrics(labels, predictions, spec)
    return regression_metrics(labels, predictions)


def baseline(reference: pd.DataFrame, spec: LabelSpec) -> Baseline | None:
    """The reference's quality, when it holds `prediction` and the label column with enough rows."""
    labels, predictions = labelled_pairs(reference, spec)
    if labels.size < spec.min_labels:
        return None
    return Baseline(rows=int(labels.size), metrics=metrics_of(labels, predictions, spec))


def drop(metric: str, current: float | None, reference: float | None) -> float | None:
    """How much worse current is than reference (positive: worse)."""
    if current is None or reference is None:
        return None
    if metric == "mean_error":
        return abs(current) - abs(reference)
    return current - reference if metric in LOWER_IS_BETTER else reference - current


def assess(frame: pd.DataFrame, spec: LabelSpec, reference: Baseline | None) -> QualityRead:
    """Quality of one slice of the window (all traffic or a group) against the reference."""
    rows = len(frame)
    labels, predictions = labelled_pairs(frame, spec)
    labelled = int(labels.size)
    common: dict[str, Any] = {
        "task": spec.task,
        "rows": rows,
        "labelled": labelled,
        "coverage": labelled / rows if rows else None,
        "min_labels": spec.min_labels,
        "reference": reference.metrics if reference else None,
        "reference_rows": reference.rows if reference else None,
    }
    if labelled < spec.min_labels:
        needed = f"not enough labels: {labelled} labelled rows, {spec.min_labels} needed"
        return QualityRead(status="not_enough_labels", current={}, message=needed, **common)
    current = metrics_of(labels, predictions, spec)
    baseline_metrics = reference.metrics if reference else {}
    drops = {m: drop(m, current.get(m), baseline_metrics.get(m)) for m in spec.metrics}
    if spec.max_drop and reference is None:
        missing = (
            "max_drop needs the reference's quality: give the reference (and the drift spec) "
            f"the columns `prediction` and `{spec.column}`"
        )
        return QualityRead(status="no_reference", current=current, drop=drops, message=missing, **common)
    breached = sorted(m for m, limit in spec.max_drop.items() if (drops.get(m) or 0.0) > limit)
    status: QualityStatus = "breach" if breached else "ok"
    return QualityRead(status=status, current=current, drop=drops, breached=breached, **common)
