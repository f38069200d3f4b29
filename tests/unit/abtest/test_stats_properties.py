"""Invariances of the whole engine, checked with hypothesis over random summary statistics.

Every property runs for every method (fixed, sequential, bayesian) and every metric type
(binary, mean, ratio), with random arms (2 or 3), correction, hypothesis (superiority or
non-inferiority, relative or absolute margin), a guardrail metric, a prior, CUPED, and
control means of either sign. Each test states its property in words. Examples are
derandomised (see conftest.py), so a failure reproduces from the test id.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoll.abtest.stats import AnalysisRequest, AnalysisResult, Comparison, analyze

Body = dict[str, Any]
METHODS = ["fixed", "sequential", "bayesian"]
TYPES = ["binary", "mean", "ratio"]
EVERY = pytest.mark.parametrize(("method", "metric_type"), [(m, t) for m in METHODS for t in TYPES])
REL = 1e-6


@dataclass(frozen=True)
class Limits:
    """What a scenario may contain, for properties that only hold under some settings."""

    relative_margins: bool = True
    informative_prior: bool = True
    cuped: bool | None = None  # None: drawn


def _covariate(rng: np.random.Generator, n: int, total: float, squares: float) -> Body:
    """A pre-period covariate with a random correlation to the metric (CUPED)."""
    mean, sd, corr = rng.uniform(-20, 50), rng.uniform(0.1, 20), rng.uniform(-0.9, 0.9)
    s_yy = max(squares - total * total / n, 0.0)
    s_xx = (n - 1) * sd * sd
    pre_sum = n * mean
    return {
        "pre_sum": pre_sum,
        "pre_sum_squares": s_xx + n * mean * mean,
        "sum_products": corr * math.sqrt(s_xx * s_yy) + total * pre_sum / n,
    }


@st.composite
def metric_data(draw: st.DrawFn, metric_type: str, arms: dict[str, int], cuped: bool) -> dict[str, Body]:
    """Per-arm sums around a shared location; arm effects of -6 to +6 standard errors.

    Hypothesis draws what shapes the answer (location, spread, each arm's effect); the
    nuisance (per-arm spreads, correlations, the covariate) comes from a seeded RNG it
    also draws, which keeps an example to a few dozen draws (the unit tier's budget).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data: dict[str, Body] = {}
    if metric_type == "binary":
        rate = draw(st.floats(0.02, 0.98))
        for arm, n in arms.items():
            z = draw(st.floats(-6, 6))
            p = rate + z * math.sqrt(rate * (1 - rate) / n)
            k = float(min(max(round(n * p), 1), n - 1))
            data[arm] = {"n": n, "sum": k, "sum_squares": k}
    elif metric_type == "mean":
        location, sd = draw(st.floats(-60, 60)), draw(st.floats(0.05, 40))
        for arm, n in arms.items():
            mean = location + draw(st.floats(-6, 6)) * sd / math.sqrt(n)
            arm_sd = sd * rng.uniform(0.5, 2)
            data[arm] = {"n": n, "sum": n * mean, "sum_squares": (n - 1) * arm_sd**2 + n * mean * mean}
    else:  # ratio: a numerator of either sign per unit over a positive denominator
        num_mean, num_sd = draw(st.floats(-30, 30)), draw(st.floats(0.1, 20))
        den_mean, den_sd = rng.uniform(0.5, 20), rng.uniform(0.05, 5)
        for arm, n in arms.items():
            m = num_mean + draw(st.floats(-6, 6)) * num_sd / math.sqrt(n)
            corr = rng.uniform(-0.8, 0.8)
            data[arm] = {
                "n": n,
                "sum": n * m,
                "sum_squares": (n - 1) * num_sd**2 + n * m * m,
                "denominator_sum": n * den_mean,
                "denominator_sum_squares": (n - 1) * den_sd**2 + n * den_mean**2,
                "sum_products": (n - 1) * corr * num_sd * den_sd + n * m * den_mean,
            }
    if cuped:
        for body in data.values():
            body.update(_covariate(rng, body["n"], body["sum"], body["sum_squares"]))
    return data


def _spread(data: dict[str, Body], metric_type: str) -> float:
    """A typical per-unit standard deviation of the metric, to size absolute margins."""
    body = next(iter(data.values()))
    n, total, squares = body["n"], body["sum"], body["sum_squares"]
    return math.sqrt(max(squares - total * total / n, 0.0) / n) or 1.0


@st.composite
def scenarios(draw: st.DrawFn, method: str, metric_type: str, limits: Limits = Limits()) -> Body:
    """A valid AnalysisRequest body: a primary metric and, maybe, a guardrail metric."""
    names = ["control", "b", "c"][: draw(st.integers(2, 3))]
    arms = {a: draw(st.integers(20, 50_000)) for a in names}
    total = sum(arms.values())
    cuped_ok = metric_type != "ratio"
    margin_types = ["relative", "absolute"] if limits.relative_margins else ["absolute"]

    def metric(name: str, guardrail: bool) -> Body:
        cuped = cuped_ok and (draw(st.booleans()) if limits.cuped is None else limits.cuped)
        data = draw(metric_data(metric_type, arms, cuped))
        body: Body = {
            "name": name,
            "type": metric_type,
            "higher_is_better": draw(st.booleans()),
            "cuped": cuped,
            "data": data,
        }
        if guardrail:
            body |= _margin(draw, draw(st.sampled_from(margin_types)), _spread(data, metric_type))
            body["guardrail"] = True
        return body

    metrics = [metric("primary", False)]
    if draw(st.booleans()):
        metrics.append(metric("guard", True))
    hypothesis: Body = {"type": "superiority"}
    if draw(st.booleans()):
        margin = _margin(draw, draw(st.sampled_from(margin_types)), _spread(metrics[0]["data"], metric_type))
        hypothesis = {"type": "non_inferiority", **margin}
    body = {
        "arms": [{"name": a, "weight": n / total} for a, n in arms.items()],
        "control": "control",
        "metrics": metrics,
        "method": method,
        "alpha": draw(st.sampled_from([0.01, 0.05, 0.1])),
        "correction": draw(st.sampled_from(["holm", "bh", "none"])),
        "hypothesis": hypothesis,
    }
    if method == "bayesian" and limits.informative_prior and draw(st.booleans()):
        body |= {"prior_mean": draw(st.floats(-0.2, 0.2)), "prior_std": draw(st.floats(0.005, 1.0))}
    return body


def _margin(draw: st.DrawFn, margin_type: str, spread: float) -> Body:
    if margin_type == "relative":
        return {"margin": draw(st.floats(0.001, 0.3)), "margin_type": "relative"}
    return {"margin": draw(st.floats(0.001, 0.3)) * spread, "margin_type": "absolute"}


def run(body: Body) -> AnalysisResult:
    return analyze(AnalysisRequest.model_validate(body))


def by_key(result: AnalysisResult) -> dict[tuple[str, str], Comparison]:
    return {(m.name, c.arm): c for m in result.metrics for c in m.comparisons}


def verdicts(result: AnalysisResult) -> dict[str, str]:
    return {d.arm: d.verdict for d in result.decisions}


def close(a: float | None, b: float | None, rel: float = REL, abs_: float = 1e-12) -> bool:
    if a is None or b is None:
        return a is b
    return a == pytest.approx(b, rel=rel, abs=abs_)


def improvement(lo: float, hi: float, higher_is_better: bool) -> tuple[float, float]:
    return (lo, hi) if higher_is_better else (-hi, -lo)


# ----------------------------------------------------------------- transformations


def negated(body: Body) -> Body:
    """Each unit's value y -> -y (binary: y -> 1 - y), higher_is_better flipped, prior mean negated."""
    out = copy.deepcopy(body)
    for metric in out["metrics"]:
        metric["higher_is_better"] = not metric["higher_is_better"]
        for arm in metric["data"].values():
            if metric["type"] == "binary":
                arm["sum"] = arm["sum_squares"] = arm["n"] - arm["sum"]
                if "pre_sum" in arm:
                    arm["sum_products"] = arm["pre_sum"] - arm["sum_products"]
            else:
                arm["sum"] = -arm["sum"]
                if "sum_products" in arm:
                    arm["sum_products"] = -arm["sum_products"]
    if "prior_mean" in out:
        out["prior_mean"] = -out["prior_mean"]
    return out


def shifted(body: Body, shift: float) -> Body:
    """Each unit's value y -> y + shift (mean metrics)."""
    out = copy.deepcopy(body)
    for metric in out["metrics"]:
        for arm in metric["data"].values():
            n, total = arm["n"], arm["sum"]
            arm["sum"] = total + n * shift
            arm["sum_squares"] += 2 * shift * total + n * shift * shift
            if "pre_sum" in arm:
                arm["sum_products"] += shift * arm["pre_sum"]
    return out


def scaled(body: Body, factor: float) -> Body:
    """Each unit's value y -> factor * y (binary: the CUPED covariate), absolute margins too."""
    out = copy.deepcopy(body)
    for metric in out["metrics"]:
        binary = metric["type"] == "binary"
        for arm in metric["data"].values():
            if binary:
                arm["pre_sum"] *= factor
                arm["pre_sum_squares"] *= factor * factor
            else:
                arm["sum"] *= factor
                arm["sum_squares"] *= factor * factor
            if "sum_products" in arm:
                arm["sum_products"] *= factor
        if not binary and metric.get("margin_type") == "absolute":
            metric["margin"] *= factor
    hypothesis = out["hypothesis"]
    absolute_margin = hypothesis["type"] == "non_inferiority" and hypothesis["margin_type"] == "absolute"
    if absolute_margin and out["metrics"][0]["type"] != "binary":
        hypothesis["margin"] *= factor
    return out


def relabelled(body: Body, order: list[int], names: list[str]) -> Body:
    """The arms renamed (``names[i]`` for the i-th arm) and listed in ``order``."""
    out = copy.deepcopy(body)
    old = [a["name"] for a in body["arms"]]
    rename = dict(zip(old, names, strict=True))
    out["arms"] = [{**body["arms"][i], "name": names[i]} for i in order]
    out["control"] = rename[body["control"]]
    for metric in out["metrics"]:
        metric["data"] = {rename[old[i]]: metric["data"][old[i]] for i in order}
    return out


# ----------------------------------------------------------------- properties


@EVERY
@given(data=st.data())
def test_negating_the_metric_and_flipping_its_direction_changes_no_decision(
    data: st.DataObject, method: str, metric_type: str
) -> None:
    """Negating every value (y -> -y; for a rate, y -> 1 - y) and flipping higher_is_better
    (and the prior's mean) gives the same verdicts, p-values and chances; the lifts and
    their intervals change sign. A relative margin or prior is a fraction of the control
    mean, so for a rate (whose complement has another mean) only absolute ones apply."""
    rate = metric_type == "binary"
    body = data.draw(
        scenarios(method, metric_type, Limits(relative_margins=not rate, informative_prior=not rate))
    )
    first, second = run(body), run(negated(body))
    assert verdicts(second) == verdicts(first)
    pairs = by_key(second)
    for key, a in by_key(first).items():
        b = pairs[key]
        assert b.verdict == a.verdict, (key, a.reasons, b.reasons)
        assert close(b.p_value, a.p_value) and close(b.adjusted_p_value, a.adjusted_p_value)
        assert close(b.chance_to_beat_control, a.chance_to_beat_control)
        assert a.absolute_lift is not None and b.absolute_lift is not None
        assert close(b.absolute_lift, -a.absolute_lift, abs_=1e-9)
        if a.absolute_ci and b.absolute_ci:
            assert close(b.absolute_ci.lower, -a.absolute_ci.upper, abs_=1e-9)
        if not rate:
            assert close(b.expected_loss, a.expected_loss, abs_=1e-9)
            assert (a.relative_lift is None) == (b.relative_lift is None)
            if a.relative_lift is not None and b.relative_lift is not None:
                assert close(b.relative_lift, -a.relative_lift, abs_=1e-9)
            if a.relative_ci and b.relative_ci:
                assert close(b.relative_ci.upper, -a.relative_ci.lower, abs_=1e-9)


@EVERY
@given(data=st.data())
def test_relabelling_arms_permutes_results_and_changes_nothing_else(
    data: st.DataObject, method: str, metric_type: str
) -> None:
    """Renaming the arms and listing them in another order (the control too) gives the
    same comparison for each arm, the same decisions and the same SRM check."""
    body = data.draw(scenarios(method, metric_type))
    k = len(body["arms"])
    order = data.draw(st.permutations(range(k)))
    names = data.draw(
        st.lists(
            st.text("abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8),
            min_size=k,
            max_size=k,
            unique=True,
        )
    )
    first, second = run(body), run(relabelled(body, list(order), names))
    rename = dict(zip([a["name"] for a in body["arms"]], names, strict=True))
    assert second.control == rename[first.control]
    assert close(second.srm.p_value, first.srm.p_value, rel=1e-9)
    assert {rename[a]: v for a, v in verdicts(first).items()} == verdicts(second)
    pairs = by_key(second)
    for (metric, arm), a in by_key(first).items():
        b = pairs[(metric, rename[arm])]
        same = a.model_dump(exclude={"arm"})
        other = b.model_dump(exclude={"arm"})
        for name in ("verdict", "ci_level"):
            assert other[name] == same[name]
        for name in (
            "absolute_lift",
            "relative_lift",
            "p_value",
            "adjusted_p_value",
            "chance_to_beat_control",
        ):
            assert close(other[name], same[name], rel=1e-9), name
        for name in ("absolute_ci", "relative_ci"):
            assert (other[name] is None) == (same[name] is None)
            if same[name]:
                assert close(other[name]["lower"], same[name]["lower"], rel=1e-9)
                assert close(other[name]["upper"], same[name]["upper"], rel=1e-9)


@pytest.mark.parametrize("method", METHODS)
@given(data=st.data())
def test_adding_a_constant_to_a_mean_metric_changes_no_absolute_readout(
    data: st.DataObject, method: str
) -> None:
    """Adding a constant to every value of a mean metric (which moves the control mean,
    possibly across zero) leaves the absolute lift, its interval, the p-values, the
    chance to beat control and every verdict unchanged. A relative margin or prior is a
    fraction of the control mean and moves with it, so only absolute ones are drawn.
    (Binary metrics: y -> 1 - y in the negation test; ratio metrics have no such shift.)"""
    body = data.draw(scenarios(method, "mean", Limits(relative_margins=False, informative_prior=False)))
    shift = data.draw(st.floats(-100, 100))
    first, second = run(body), run(shifted(body, shift))
    assert verdicts(second) == verdicts(first)
    pairs = by_key(second)
    for key, a in by_key(first).items():
        b = pairs[key]
        assert b.verdict == a.verdict, (key, a.reasons, b.reasons)
        scale = abs(a.absolute_lift or 0) + (
            a.absolute_ci.upper - a.absolute_ci.lower if a.absolute_ci else 0
        )
        assert close(b.absolute_lift, a.absolute_lift, abs_=1e-7 * (scale + 1))
        assert close(b.p_value, a.p_value, rel=1e-5, abs_=1e-12)
        assert close(b.chance_to_beat_control, a.chance_to_beat_control, rel=1e-5, abs_=1e-12)
        if a.absolute_ci and b.absolute_ci:
            assert close(b.absolute_ci.lower, a.absolute_ci.lower, abs_=1e-7 * (scale + 1))
            assert close(b.absolute_ci.upper, a.absolute_ci.upper, abs_=1e-7 * (scale + 1))


@EVERY
@given(data=st.data())
def test_scaling_by_a_positive_constant_changes_no_decision(
    data: st.DataObject, method: str, metric_type: str
) -> None:
    """Multiplying every value by a positive constant (and absolute margins with it)
    leaves p-values, chances, relative readouts and verdicts unchanged and scales the
    absolute lift. A rate's values are 0/1, so for binary metrics the CUPED covariate is
    the one scaled, which must change nothing at all."""
    rate = metric_type == "binary"
    body = data.draw(scenarios(method, metric_type, Limits(cuped=True if rate else None)))
    factor = data.draw(st.floats(1e-3, 1e3))
    first, second = run(body), run(scaled(body, factor))
    assert verdicts(second) == verdicts(first)
    pairs = by_key(second)
    unit = 1.0 if rate else factor
    for key, a in by_key(first).items():
        b = pairs[key]
        assert b.verdict == a.verdict, (key, a.reasons, b.reasons)
        assert close(b.p_value, a.p_value, rel=1e-5, abs_=1e-300)
        assert close(b.adjusted_p_value, a.adjusted_p_value, rel=1e-5, abs_=1e-300)
        assert close(b.chance_to_beat_control, a.chance_to_beat_control, rel=1e-5, abs_=1e-12)
        assert a.absolute_lift is not None
        assert close(b.absolute_lift, a.absolute_lift * unit, rel=1e-6, abs_=1e-9 * unit)
        assert close(b.relative_lift, a.relative_lift, rel=1e-6, abs_=1e-9)
        assert close(b.expected_loss, a.expected_loss, rel=1e-5, abs_=1e-9)


SPAN = re.compile(r"CI (?P<lo>[-+][\d.]+(?:e[-+]?\d+)?)%? to (?P<hi>[-+][\d.]+(?:e[-+]?\d+)?)%?")


@EVERY
@given(data=st.data())
def test_better_is_never_said_of_an_interval_on_the_worse_side(
    data: st.DataObject, method: str, metric_type: str
) -> None:
    """No comparison says "better" (ship on superiority, a chance to beat control >= 1 - alpha)
    while an interval it prints (absolute, relative, or the one quoted in its reason) lies
    entirely on the worse side; and no "worse" while one lies entirely on the better side.
    The relative lift has the sign of the absolute lift whatever the control mean's sign."""
    body = data.draw(scenarios(method, metric_type))
    result = run(body)
    superiority = body["hypothesis"]["type"] == "superiority"
    for metric in result.metrics:
        hib = metric.higher_is_better
        for c in metric.comparisons:
            if c.absolute_lift is not None and c.relative_lift is not None:
                assert (
                    math.copysign(1, c.relative_lift) == math.copysign(1, c.absolute_lift)
                    or c.absolute_lift == 0
                )
            says = None
            if not metric.guardrail and superiority and c.verdict in ("ship", "dont_ship"):
                says = "better" if c.verdict == "ship" else "worse"
            if says is None:
                continue
            printed = [(i.lower, i.upper) for i in (c.absolute_ci, c.relative_ci) if i is not None]
            printed += [(float(m["lo"]), float(m["hi"])) for r in c.reasons for m in SPAN.finditer(r)]
            for lo, hi in printed:
                better_lo, better_hi = improvement(lo, hi, hib)
                if says == "better":
                    assert better_hi > 0, (c.reasons, lo, hi)
                else:
                    assert better_lo < 0, (c.reasons, lo, hi)
            if result.method != "bayesian":
                assert any(f"significantly {says}" in r for r in c.reasons), c.reasons


@EVERY
@given(data=st.data())
def test_every_readout_points_the_same_way(data: st.DataObject, method: str, metric_type: str) -> None:
    """With a flat prior, the relative lift and the midpoints of both intervals have the
    sign of the absolute lift; the chance to beat control is above one half exactly when
    the arm improves on control, and then the expected loss of shipping is the smaller."""
    body = data.draw(scenarios(method, metric_type, Limits(informative_prior=False)))
    for metric in run(body).metrics:
        s = 1 if metric.higher_is_better else -1
        for c in metric.comparisons:
            if c.absolute_lift is None or c.absolute_ci is None:
                continue
            if abs(c.absolute_lift) <= 1e-9 * (c.absolute_ci.upper - c.absolute_ci.lower):
                continue  # numerically zero: its sign is rounding
            up = c.absolute_lift > 0
            assert (c.absolute_ci.lower + c.absolute_ci.upper > 0) == up
            if c.relative_lift is not None:
                assert (c.relative_lift > 0) == up
            if c.relative_ci is not None:
                assert (c.relative_ci.lower + c.relative_ci.upper > 0) == up
            if c.chance_to_beat_control is not None:
                assert (c.chance_to_beat_control > 0.5) == (s * c.absolute_lift > 0)
            if c.expected_loss is not None and c.expected_loss_control is not None:
                assert (c.expected_loss < c.expected_loss_control) == (s * c.absolute_lift > 0)


@pytest.mark.parametrize("method", METHODS)
@given(data=st.data())
def test_intervals_contain_the_estimate(data: st.DataObject, method: str) -> None:
    """With a flat prior every interval contains its point estimate, and 0 <= p <= adjusted p <= 1."""
    body = data.draw(scenarios(method, data.draw(st.sampled_from(TYPES)), Limits(informative_prior=False)))
    for metric in run(body).metrics:
        for c in metric.comparisons:
            if c.absolute_ci is not None and c.absolute_lift is not None:
                assert c.absolute_ci.lower <= c.absolute_lift <= c.absolute_ci.upper
            if c.relative_ci is not None and c.relative_lift is not None:
                assert c.relative_ci.lower <= c.relative_lift <= c.relative_ci.upper
            if c.p_value is not None:
                assert c.adjusted_p_value is not None
                assert 0 <= c.p_value <= c.adjusted_p_value <= 1
