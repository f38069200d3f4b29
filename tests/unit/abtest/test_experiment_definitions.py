"""What an experiment definition accepts before any database is involved: one primary metric,
the fields each metric type needs, serving metrics, Thompson allocation's conditions."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from atoll.abtest.schemas import ExperimentCreate, MetricIn


def body(**extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "key": "exp",
        "endpoint": "shop",
        "arms": [
            {"deployment": "blue", "weight": 50, "control": True},
            {"deployment": "green", "weight": 50},
        ],
        "metrics": [{"name": "conversion", "type": "binary", "event": "purchase"}],
    }
    found.update(extra)
    return found


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as error:
        ExperimentCreate.model_validate(data)
    return str(error.value)


def test_a_minimal_definition_takes_the_documented_defaults() -> None:
    made = ExperimentCreate.model_validate(body())
    assert (made.alpha, made.method, made.hypothesis, made.allocation) == (
        0.05,
        "fixed",
        "superiority",
        "fixed",
    )
    assert (made.attribution_seconds, made.promote_alias) == (86_400, "champion")
    assert made.primary.name == "conversion"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"metrics": [{"name": "a", "type": "binary", "role": "secondary"}]}, "exactly one metric has role primary"),
        ({"metrics": [{"name": "a", "type": "binary"}, {"name": "a", "type": "mean", "role": "secondary"}]}, "unique"),
        ({"hypothesis": "non_inferiority"}, "margin: must be > 0"),
        ({"key": "Not_A_Label"}, "key"),
        ({"allocation": "thompson", "metrics": [{"name": "rev", "type": "mean"}]}, "thompson needs a binary"),
        ({"allocation": "thompson", "allocation_floor": 50, "arms": [
            {"deployment": d, "weight": w, "control": d == "a"} for d, w in (("a", 34), ("b", 33), ("c", 33))
        ]}, "allocation_floor: 50% for each of 3 arms"),
        ({"attribution_seconds": 0}, "attribution_seconds"),
    ],
)  # fmt: skip
def test_a_bad_definition_names_what_to_fix(change: dict[str, Any], words: str) -> None:
    assert words in refused(body(**change))


def test_thompson_takes_a_bounded_mean_primary() -> None:
    made = ExperimentCreate.model_validate(
        body(allocation="thompson", metrics=[{"name": "watch", "type": "mean", "max_value": 60}])
    )
    assert made.primary.max_value == 60


@pytest.mark.parametrize(
    ("metric", "words"),
    [
        ({"name": "ctr", "type": "ratio", "numerator": "click"}, "numerator and denominator"),
        ({"name": "m", "type": "mean", "numerator": "a"}, "only ratio metrics take them"),
        ({"name": "m", "type": "binary", "max_value": 2}, "only mean metrics take a bound"),
        (
            {"name": "l", "type": "binary", "serving": "latency_ms", "role": "guardrail"},
            "latency_ms is a mean",
        ),
        ({"name": "l", "type": "mean", "serving": "latency_ms"}, "not the primary"),
        (
            {"name": "l", "type": "mean", "serving": "latency_ms", "role": "guardrail", "event": "x"},
            "inference log",
        ),
    ],
)
def test_a_bad_metric_names_what_to_fix(metric: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as error:
        MetricIn.model_validate(metric)
    assert words in str(error.value)


def test_the_outcome_events_a_metric_reads() -> None:
    assert MetricIn(name="conversion", type="binary").events == ["conversion"]
    assert MetricIn(name="rev", type="mean", event="revenue", covariate="revenue_pre").events == [
        "revenue",
        "revenue_pre",
    ]
    assert MetricIn(name="ctr", type="ratio", numerator="click", denominator="impression").events == [
        "click",
        "impression",
    ]
    assert MetricIn(name="lat", type="mean", serving="latency_ms", role="guardrail").events == []
