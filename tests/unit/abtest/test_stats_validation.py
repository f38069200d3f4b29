"""Validation errors name the offending field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from atoll.abtest.stats import AnalysisRequest, ArmData

GOOD: dict[str, Any] = {
    "arms": [{"name": "control", "weight": 0.5}, {"name": "new", "weight": 0.5}],
    "control": "control",
    "metrics": [
        {
            "name": "conv",
            "type": "binary",
            "data": {
                "control": {"n": 100, "sum": 10, "sum_squares": 10},
                "new": {"n": 100, "sum": 12, "sum_squares": 12},
            },
        }
    ],
}


def errors(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        AnalysisRequest.model_validate(body)
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in info.value.errors())


def changed(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = body
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return body


def test_good_request_is_valid() -> None:
    assert AnalysisRequest.model_validate(GOOD).alpha == 0.05


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        ("metrics.0.data.new.n", -1, "data.new.n"),
        ("metrics.0.data.new.sum", 101, "data.new: Value error, sum_squares=12.0 is impossible"),
        ("metrics.0.data.new.sum", -1, "data.new.sum must be within [0, n]"),
        ("metrics.0.data.new.sum_squares", 11, "data.new.sum_squares must equal sum"),
        ("metrics.0.data.new.sum", float("nan"), "data.new.sum"),
        ("control", "nobody", "control: unknown arm 'nobody'"),
        ("arms.1.weight", 0.6, "arms: Value error, weights must sum to 1"),
        ("arms.1.weight", -0.5, "arms.1.weight"),
        ("alpha", 0.0, "alpha"),
        ("alpha", 0.6, "alpha"),
        ("method", "magic", "method"),
        ("correction", "bonferroni", "correction"),
        ("metrics.0.type", "median", "metrics.0.type"),
        ("hypothesis", {"type": "non_inferiority"}, "margin must be > 0"),
    ],
)
def test_field_is_named(path: str, value: Any, needle: str) -> None:
    assert needle in errors(changed(path, value))


def test_unknown_arm_in_metric_data() -> None:
    body = copy.deepcopy(GOOD)
    body["metrics"][0]["data"]["ghost"] = {"n": 1, "sum": 0, "sum_squares": 0}
    assert "metrics.conv.data: unknown arm(s) ['ghost'] not in arms" in errors(body)


def test_missing_arm_in_metric_data() -> None:
    body = copy.deepcopy(GOOD)
    del body["metrics"][0]["data"]["new"]
    assert "metrics.conv.data: missing arm(s) ['new']" in errors(body)


def test_unknown_field_is_rejected() -> None:
    body = changed("metrics.0.data.new.sums", 3)
    assert "data.new.sums" in errors(body)


def test_weights_tolerance() -> None:
    body = changed("arms.1.weight", 0.5 + 5e-7)
    assert AnalysisRequest.model_validate(body)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"n": 4, "sum": 10.0, "sum_squares": 24.9}, "sum_squares=24.9 is impossible"),
        ({"n": 4, "sum": 10.0, "sum_squares": -1.0}, "sum_squares must be >= 0"),
        ({"n": 0, "sum": 1.0, "sum_squares": 1.0}, "sum_squares=1.0 is impossible"),
        (
            {
                "n": 4,
                "sum": 10.0,
                "sum_squares": 25.0,
                "pre_sum": 4.0,
                "pre_sum_squares": 3.0,
                "sum_products": 10.0,
            },
            "pre_sum_squares=3.0 is impossible",
        ),
        (
            {
                "n": 4,
                "sum": 10.0,
                "sum_squares": 30.0,
                "pre_sum": 4.0,
                "pre_sum_squares": 6.0,
                "sum_products": 30.0,
            },
            "sum_products=30.0 is impossible",
        ),
        ({"n": 4, "sum": 1.0, "sum_squares": 1.0, "pre_sum": 4.0}, "pre_sum and pre_sum_squares"),
    ],
)
def test_moment_inequalities(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle.replace("[", r"\[")):
        ArmData.model_validate(fields)


def test_cauchy_schwarz_float_tolerance() -> None:
    # n * sum_squares == sum**2 exactly in reals, a hair below in floats
    n, mean = 3, 0.1
    ArmData(n=n, sum=n * mean, sum_squares=n * mean * mean * (1 - 1e-12))


def test_ratio_needs_denominator() -> None:
    body = changed("metrics.0.type", "ratio")
    body["metrics"][0]["data"]["new"] = {"n": 100, "sum": 12, "sum_squares": 12}
    body["metrics"][0]["data"]["control"] = {"n": 100, "sum": 12, "sum_squares": 12}
    assert "ratio metrics need denominator_sum" in errors(body)


def test_cuped_needs_pre_period() -> None:
    body = changed("metrics.0.cuped", True)
    assert "cuped needs pre_sum" in errors(body)
