"""Labels joined from outcome events by unit, and model quality against sklearn and by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn import metrics as skm

from atoll.cli.monitor import quality_summary
from atoll.monitoring.gauges import quality_values
from atoll.monitoring.labels import join_labels
from atoll.monitoring.quality import Baseline, assess, baseline, drop, labelled_pairs, metrics_of
from atoll.monitoring.quality_schemas import LabelSpec
from atoll.web.portal import quality_charts

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def predictions(*rows: tuple[timedelta, str | None]) -> pd.DataFrame:
    return pd.DataFrame({"ts": [T0 + at for at, _ in rows], "unit_id": [unit for _, unit in rows]})


def outcomes(*rows: tuple[timedelta, str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit_id": [u for _, u, _ in rows],
            "ts": [T0 + at for at, _, _ in rows],
            "value": [v for *_, v in rows],
        }
    )


def labels_list(series: pd.Series) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in series]


class TestJoin:
    def test_a_label_inside_the_attribution_window_joins_and_one_outside_does_not(self) -> None:
        joined = join_labels(
            predictions((timedelta(0), "a"), (timedelta(0), "b"), (timedelta(0), "c")),
            outcomes(
                (timedelta(hours=23), "a", 1.0),  # late but inside
                (DAY, "b", 1.0),  # exactly at the end: outside ([ts, ts + attribution))
                (DAY + timedelta(seconds=1), "c", 0.0),  # outside
            ),
            DAY,
        )
        assert labels_list(joined) == [1.0, None, None]

    def test_an_outcome_before_the_prediction_does_not_label_it_one_at_the_same_instant_does(self) -> None:
        joined = join_labels(
            predictions((timedelta(hours=1), "a"), (timedelta(hours=1), "b")),
            outcomes((timedelta(0), "a", 1.0), (timedelta(hours=1), "b", 0.0)),
            DAY,
        )
        assert labels_list(joined) == [None, 0.0]

    def test_two_predictions_of_one_unit_each_take_their_first_later_outcome(self) -> None:
        joined = join_labels(
            predictions((timedelta(0), "u"), (timedelta(hours=2), "u"), (timedelta(hours=5), "u")),
            outcomes(
                (timedelta(hours=1), "u", 0.0), (timedelta(hours=3), "u", 1.0), (timedelta(hours=4), "u", 7.0)
            ),
            DAY,
        )
        # First: the 1 h event. Second: the 3 h event, not the later 4 h one. Third: none after it.
        assert labels_list(joined) == [0.0, 1.0, None]

    def test_both_predictions_before_one_outcome_take_it(self) -> None:
        joined = join_labels(
            predictions((timedelta(0), "u"), (timedelta(minutes=30), "u")),
            outcomes((timedelta(hours=1), "u", 1.0)),
            DAY,
        )
        assert labels_list(joined) == [1.0, 1.0]

    def test_rows_without_a_unit_id_stay_unlabelled_and_order_is_kept(self) -> None:
        joined = join_labels(
            predictions((timedelta(hours=3), "b"), (timedelta(0), None), (timedelta(hours=1), "a")),
            outcomes((timedelta(hours=4), "a", 5.0), (timedelta(hours=4), "b", 6.0)),
            DAY,
        )
        assert labels_list(joined) == [6.0, None, 5.0]

    def test_the_first_of_two_events_at_one_instant_wins(self) -> None:
        joined = join_labels(
            predictions((timedelta(0), "u")),
            outcomes((timedelta(hours=1), "u", 1.0), (timedelta(hours=1), "u", 0.0)),
            DAY,
        )
        assert labels_list(joined) == [1.0]

    def test_no_outcomes_leaves_everything_unlabelled(self) -> None:
        empty = pd.DataFrame(columns=["unit_id", "ts", "value"])
        assert labels_list(join_labels(predictions((timedelta(0), "a")), empty, DAY)) == [None]


def spec(**fields: Any) -> LabelSpec:
    return LabelSpec.model_validate({"metric": "converted", "task": "classification", **fields})


class TestClassification:
    def test_class_predictions_against_sklearn(self) -> None:
        rng = np.random.default_rng(1)
        labels = rng.integers(0, 2, 500).astype(float)
        predicted = np.where(rng.random(500) < 0.8, labels, 1 - labels)
        found = metrics_of(labels, predicted, spec())
        assert found["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
        assert found["precision"] == pytest.approx(skm.precision_score(labels, predicted))
        assert found["recall"] == pytest.approx(skm.recall_score(labels, predicted))
        assert found["f1"] == pytest.approx(skm.f1_score(labels, predicted))
        assert found["roc_auc"] is None and found["log_loss"] is None

    def test_by_hand_on_a_tiny_case(self) -> None:
        # truth 1 1 0 0, predicted 1 0 1 0: tp=1 fp=1 fn=1 tn=1
        found = metrics_of(np.array([1.0, 1, 0, 0]), np.array([1.0, 0, 1, 0]), spec())
        assert (found["accuracy"], found["precision"], found["recall"], found["f1"]) == (0.5, 0.5, 0.5, 0.5)

    def test_positive_label_other_than_one(self) -> None:
        found = metrics_of(np.array([2.0, 2, 5, 5]), np.array([2.0, 5, 5, 5]), spec(positive_label=2))
        assert found["precision"] == 1.0 and found["recall"] == 0.5

    def test_scores_with_a_threshold_give_auc_and_log_loss(self) -> None:
        rng = np.random.default_rng(2)
        labels = rng.integers(0, 2, 400).astype(float)
        scores = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1)
        found = metrics_of(labels, scores, spec(threshold=0.5))
        classes = scores >= 0.5
        assert found["accuracy"] == pytest.approx(skm.accuracy_score(labels == 1, classes))
        assert found["f1"] == pytest.approx(skm.f1_score(labels == 1, classes))
        assert found["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
        assert found["log_loss"] == pytest.approx(skm.log_loss(labels, scores))

    def test_auc_needs_both_classes_and_log_loss_probabilities(self) -> None:
        found = metrics_of(np.array([1.0, 1, 1]), np.array([0.2, 3.0, 0.9]), spec(threshold=0.5))
        assert found["roc_auc"] is None and found["log_loss"] is None and found["accuracy"] == 2 / 3

    def test_more_than_two_classes_macro_average(self) -> None:
        labels = np.array([0.0, 1, 2, 2, 1, 0])
        predicted = np.array([0.0, 2, 2, 2, 1, 1])
        found = metrics_of(labels, predicted, spec())
        assert found["f1"] == pytest.approx(skm.f1_score(labels, predicted, average="macro"))
        assert found["precision"] == pytest.approx(skm.precision_score(labels, predicted, average="macro"))


class TestRegression:
    def test_against_sklearn_and_the_bias_by_hand(self) -> None:
        rng = np.random.default_rng(3)
        labels = rng.normal(10, 3, 300)
        predicted = labels + rng.normal(0.5, 1, 300)
        found = metrics_of(labels, predicted, spec(task="regression"))
        assert found["mae"] == pytest.approx(skm.mean_absolute_error(labels, predicted))
        assert found["rmse"] == pytest.approx(skm.root_mean_squared_error(labels, predicted))
        assert found["r2"] == pytest.approx(skm.r2_score(labels, predicted))
        assert found["mean_error"] == pytest.approx(float(np.mean(predicted - labels)))

    def test_r2_is_none_for_a_constant_label(self) -> None:
        found = metrics_of(np.array([3.0, 3.0]), np.array([2.0, 4.0]), spec(task="regression"))
        assert found["r2"] is None and found["mae"] == 1.0 and found["mean_error"] == 0.0


class TestAssess:
    def frame(self, labels: list[float | None], predicted: list[Any]) -> pd.DataFrame:
        return pd.DataFrame({"target": labels, "prediction": predicted})

    def test_rows_need_a_label_and_a_numeric_prediction(self) -> None:
        labels, predicted = labelled_pairs(self.frame([1.0, None, 0.0, 1.0], [1, 0, None, "x"]), spec())
        assert labels.tolist() == [1.0] and predicted.tolist() == [1.0]

    def test_too_few_labels_is_not_enough_labels_without_metrics(self) -> None:
        quality = assess(
            self.frame([1.0] * 5 + [None] * 95, [1] * 100), spec(max_drop={"accuracy": 0.01}), None
        )
        assert quality.status == "not_enough_labels" and quality.current == {} and not quality.breached
        assert (
            quality.labelled == 5
            and quality.coverage == 0.05
            and "5 labelled rows, 30 needed" in (quality.message or "")
        )

    def test_a_drop_past_max_drop_breaches_and_a_smaller_one_does_not(self) -> None:
        frame = self.frame([1.0] * 40, [1] * 36 + [0] * 4)  # accuracy 0.9
        reference = Baseline(rows=100, metrics={"accuracy": 0.97, "f1": 0.96})
        breached = assess(frame, spec(max_drop={"accuracy": 0.05}), reference)
        assert breached.status == "breach" and breached.breached == ["accuracy"]
        assert breached.drop["accuracy"] == pytest.approx(0.07)
        within = assess(frame, spec(max_drop={"accuracy": 0.1}), reference)
        assert within.status == "ok" and within.breached == []

    def test_thresholds_without_a_reference_quality_say_so(self) -> None:
        quality = assess(self.frame([1.0] * 40, [1] * 40), spec(max_drop={"accuracy": 0.05}), None)
        assert quality.status == "no_reference" and "prediction" in (quality.message or "")

    def test_baseline_needs_both_columns(self) -> None:
        assert baseline(pd.DataFrame({"target": [1.0] * 50}), spec()) is None
        found = baseline(self.frame([1.0] * 50, [1] * 50), spec())
        assert found is not None and found.rows == 50 and found.metrics["accuracy"] == 1.0

    @pytest.mark.parametrize(
        ("metric", "current", "reference", "worse_by"),
        [
            ("accuracy", 0.8, 0.9, 0.1),
            ("mae", 3.0, 2.0, 1.0),
            ("mean_error", -0.5, 0.2, 0.3),
            ("r2", 0.9, 0.8, -0.1),
        ],
    )
    def test_drop_is_positive_when_worse(
        self, metric: str, current: float, reference: float, worse_by: float
    ) -> None:
        assert drop(metric, current, reference) == pytest.approx(worse_by)


class TestLabelSpec:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"task": "ranking"}, "task"),
            ({"max_drop": {"mae": 1.0}}, "do not apply to classification"),
            ({"max_drop": {"roc_auc": 0.02}}, "need a score"),
            ({"task": "regression", "threshold": 0.5}, "only classification"),
            ({"column": "prediction"}, "is the logged prediction"),
            ({"max_drop": {"accuracy": -0.1}}, "must be >= 0"),
        ],
    )
    def test_refused_naming_the_field(self, fields: dict[str, Any], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            spec(**fields)

    def test_defaults(self) -> None:
        found = spec()
        assert (found.column, found.attribution_seconds, found.min_labels, found.positive_label) == (
            "target",
            86400,
            30,
            1.0,
        )


class TestViews:
    """What the portal, the gauges and the CLI make of a run row's stored quality."""

    QUALITY: ClassVar[dict[str, Any]] = {
        "task": "classification",
        "status": "breach",
        "rows": 100,
        "labelled": 80,
        "coverage": 0.8,
        "min_labels": 30,
        "current": {"accuracy": 0.8, "f1": 0.7, "roc_auc": None, "log_loss": None},
        "reference": {"accuracy": 0.9, "f1": 0.85, "roc_auc": None, "log_loss": None},
        "reference_rows": 500,
        "drop": {"accuracy": 0.1, "f1": 0.15, "roc_auc": None, "log_loss": None},
        "breached": ["accuracy"],
        "message": None,
    }

    def test_table_rows_leave_out_metrics_without_a_value(self) -> None:
        rows = quality_charts.table_rows(self.QUALITY, spec(max_drop={"accuracy": 0.05}))
        assert [(r.metric, r.current, r.reference, r.max_drop, r.breached) for r in rows] == [
            ("accuracy", 0.8, 0.9, 0.05, True),
            ("f1", 0.7, 0.85, None, False),
        ]
        assert quality_charts.table_rows({**self.QUALITY, "current": {}}, spec()) == []

    def test_timeline_places_the_breach_under_the_line_and_a_window_without_labels_as_a_gap(self) -> None:
        at = datetime(2026, 12, 1, tzinfo=UTC)
        few = {**self.QUALITY, "status": "not_enough_labels", "current": {}, "message": "not enough labels"}
        runs = [
            Run(id=1, window_end=at, quality=self.QUALITY),
            Run(id=2, window_end=at + timedelta(hours=1), quality=few),
        ]
        chart = quality_charts.timeline(runs, spec(max_drop={"accuracy": 0.05}))  # type: ignore[arg-type]
        assert chart is not None
        breach, gap = chart.points
        assert breach.tone == "drift" and breach.y is not None and breach.y > chart.threshold_y  # below 0.85
        assert gap.y is None and "not enough labels" in gap.title

    def test_gauge_values_and_the_cli_line(self) -> None:
        assert quality_values(self.QUALITY) == [("accuracy", 0.8), ("f1", 0.7), ("label_coverage", 0.8)]
        assert quality_values(None) == []
        line = quality_summary(self.QUALITY)
        assert (
            line
            == "breach (80 labels, 80% labelled); breached: accuracy: accuracy 0.8 (ref 0.9), f1 0.7 (ref 0.85)"
        )


@dataclass
class Run:
    """The run row fields the quality timeline reads."""

    id: int
    window_end: datetime
    quality: dict[str, Any] | None
