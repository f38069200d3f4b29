"""Invariances of the engine, checked with hypothesis over random summary statistics."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoll.abtest.stats import AnalysisRequest, AnalysisResult, analyze

Arm = dict[str, Any]


@st.composite
def mean_arm(draw: st.DrawFn) -> Arm:
    n = draw(st.integers(2, 100_000))
    mean = draw(st.floats(0.5, 100))
    std = draw(st.floats(0.01, 50))
    total = n * mean
    return {"n": n, "sum": total, "sum_squares": (n - 1) * std**2 + total * total / n}


def request(data: dict[str, Arm], control: str, method: str = "fixed", **kw: Any) -> AnalysisRequest:
    names = list(data)
    return AnalysisRequest.model_validate(
        {
            "arms": [{"name": a, "weight": 1 / len(names)} for a in names],
            "control": control,
            "metrics": [{"name": "m", "type": "mean", "data": data}],
            "method": method,
            **kw,
        }
    )


def numbers(res: AnalysisResult) -> list[tuple[Any, ...]]:
    return [
        (
            c.absolute_lift,
            c.relative_lift,
            c.p_value,
            c.adjusted_p_value,
            c.absolute_ci,
            c.relative_ci,
            c.chance_to_beat_control,
            c.verdict,
        )
        for m in res.metrics
        for c in m.comparisons
    ]


methods = st.sampled_from(["fixed", "sequential", "bayesian"])
common = settings(max_examples=60, deadline=None)


@common
@given(a=mean_arm(), b=mean_arm(), method=methods)
def test_swapping_arms_flips_the_absolute_effect(a: Arm, b: Arm, method: str) -> None:
    ab = analyze(request({"a": a, "b": b}, "a", method)).metrics[0].comparisons[0]
    ba = analyze(request({"a": b, "b": a}, "a", method)).metrics[0].comparisons[0]
    assert ab.absolute_lift is not None
    assert ba.absolute_lift == pytest.approx(-ab.absolute_lift, rel=1e-9, abs=1e-12)
    if method != "bayesian":
        assert ba.p_value == pytest.approx(ab.p_value, rel=1e-9)
    assert ab.absolute_ci is not None
    assert ba.absolute_ci is not None
    assert ba.absolute_ci.lower == pytest.approx(-ab.absolute_ci.upper, rel=1e-9, abs=1e-12)


@common
@given(a=mean_arm(), b=mean_arm(), scale=st.floats(1e-3, 1e3), method=methods)
def test_scaling_scales_the_effect_and_keeps_p(a: Arm, b: Arm, scale: float, method: str) -> None:
    def scaled(arm: Arm) -> Arm:
        return {"n": arm["n"], "sum": arm["sum"] * scale, "sum_squares": arm["sum_squares"] * scale**2}

    base = analyze(request({"a": a, "b": b}, "a", method)).metrics[0].comparisons[0]
    big = analyze(request({"a": scaled(a), "b": scaled(b)}, "a", method)).metrics[0].comparisons[0]
    assert base.absolute_lift is not None
    assert big.absolute_lift == pytest.approx(base.absolute_lift * scale, rel=1e-7, abs=1e-10 * scale)
    assert big.relative_lift == pytest.approx(base.relative_lift, rel=1e-7, abs=1e-12)
    if method == "bayesian":
        assert big.chance_to_beat_control == pytest.approx(base.chance_to_beat_control, rel=1e-6, abs=1e-12)
    else:
        assert big.p_value == pytest.approx(base.p_value, rel=1e-6, abs=1e-300)
    assert big.verdict == base.verdict


@common
@given(
    arms=st.lists(mean_arm(), min_size=3, max_size=3),
    names=st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8),
        min_size=3,
        max_size=3,
        unique=True,
    ),
    method=methods,
    correction=st.sampled_from(["holm", "bh", "none"]),
)
def test_relabelling_arms_changes_nothing(
    arms: list[Arm], names: list[str], method: str, correction: str
) -> None:
    first = analyze(
        request(dict(zip(["c", "t1", "t2"], arms, strict=True)), "c", method, correction=correction)
    )
    # new names, and the arms listed in another order
    relabelled = {names[2]: arms[2], names[0]: arms[0], names[1]: arms[1]}
    second = analyze(request(relabelled, names[0], method, correction=correction))
    by_arm = {c.arm: c for c in second.metrics[0].comparisons}
    again = [by_arm[names[1]], by_arm[names[2]]]
    for x, y in zip(first.metrics[0].comparisons, again, strict=True):
        assert (x.absolute_lift, x.p_value, x.adjusted_p_value, x.verdict) == (
            y.absolute_lift,
            y.p_value,
            y.adjusted_p_value,
            y.verdict,
        )
        assert x.absolute_ci == y.absolute_ci
        assert x.relative_ci == y.relative_ci


@common
@given(
    arms=st.lists(mean_arm(), min_size=2, max_size=4),
    method=methods,
    correction=st.sampled_from(["holm", "bh", "none"]),
    alpha=st.floats(0.001, 0.5),
)
def test_intervals_contain_the_estimate(arms: list[Arm], method: str, correction: str, alpha: float) -> None:
    data = {f"arm{i}": a for i, a in enumerate(arms)}
    res = analyze(request(data, "arm0", method, correction=correction, alpha=alpha))
    for c in res.metrics[0].comparisons:
        assert c.absolute_ci is not None
        assert c.relative_ci is not None
        assert c.absolute_lift is not None
        assert c.relative_lift is not None
        assert c.absolute_ci.lower <= c.absolute_lift <= c.absolute_ci.upper
        assert c.relative_ci.lower <= c.relative_lift <= c.relative_ci.upper
        if c.p_value is not None:
            assert 0 <= c.p_value <= c.adjusted_p_value <= 1  # type: ignore[operator]
