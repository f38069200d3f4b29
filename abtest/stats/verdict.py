"""Verdict rules: per comparison (metric x treatment arm) and per treatment arm.

Directions are folded in with ``sign = +1`` (higher is better) or ``-1``: an interval of
the effect ``[lo, hi]`` becomes the interval of the *improvement* ``[sign*lo, sign*hi]``
(reordered). ``M >= 0`` is the tolerated worsening, on the scale of its margin type.

Primary metric, frequentist (fixed or sequential):
  superiority: adjusted p < alpha -> ship if better, dont_ship if worse; else keep_running.
  non-inferiority: improvement lower bound > -M -> ship; upper bound < -M -> dont_ship.
Guardrail metric (unadjusted interval): upper bound < -M -> dont_ship (worse beyond the
margin); lower bound > -M -> ship (shown within the margin); else keep_running.
Bayesian: the same rules with posterior probabilities against ``1 - alpha`` / ``alpha``.
Relative intervals and margins are over ``|control mean|`` (see ``analyze``), so folding
with ``sign`` is right for either sign of the control mean.
Degenerate data -> keep_running with the reason; SRM -> invalid everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from atoll.abtest.stats.schemas import HypothesisType, MarginType, Method, Verdict


@dataclass(frozen=True)
class Evidence:
    metric: str
    method: Method
    guardrail: bool
    sign: int
    hypothesis: HypothesisType
    margin: float
    margin_type: MarginType
    alpha: float
    ci_level: float
    p_adjusted: float | None
    absolute_ci: tuple[float, float] | None
    relative_ci: tuple[float, float] | None
    prob_better: float | None  # bayesian: P(improvement > 0)
    prob_within_margin: float | None  # bayesian: P(improvement > -M)
    issue: str | None


def _fmt(x: float, margin_type: MarginType) -> str:
    return f"{x:+.2%}" if margin_type == "relative" else f"{x:+.4g}"


def _improvement(ci: tuple[float, float], sign: int) -> tuple[float, float]:
    lo, hi = ci
    return (lo, hi) if sign > 0 else (-hi, -lo)


def _margin_text(e: Evidence) -> str:
    return _fmt(-e.margin, e.margin_type) + (" relative" if e.margin_type == "relative" else "")


def _bayesian(e: Evidence) -> tuple[Verdict, str]:
    name = f"guardrail {e.metric}" if e.guardrail else e.metric
    hi_p, lo_p = 1 - e.alpha, e.alpha
    if e.guardrail or e.hypothesis == "non_inferiority":
        p = e.prob_within_margin
        assert p is not None
        if p >= hi_p:
            return "ship", f"{name}: P(within the {_margin_text(e)} margin) = {p:.1%}"
        if p <= lo_p:
            return "dont_ship", f"{name}: P(worse than the {_margin_text(e)} margin) = {1 - p:.1%}"
        return (
            "keep_running",
            f"{name}: P(within the {_margin_text(e)} margin) = {p:.1%}, undecided",
        )
    p = e.prob_better
    assert p is not None
    if p >= hi_p:
        return "ship", f"{name}: chance to beat control {p:.1%} >= {hi_p:.0%}"
    if p <= lo_p:
        return "dont_ship", f"{name}: chance to beat control {p:.1%} <= {lo_p:.0%}"
    return "keep_running", f"{name}: chance to beat control {p:.1%}, undecided"


def _frequentist(e: Evidence) -> tuple[Verdict, str]:
    name = f"guardrail {e.metric}" if e.guardrail else e.metric
    level = f"{e.ci_level * 100:.4g}%"
    if e.guardrail or e.hypothesis == "non_inferiority":
        ci = e.relative_ci if e.margin_type == "relative" else e.absolute_ci
        if ci is None:
            return "keep_running", f"{name}: no {e.margin_type} interval to compare with the margin"
        lo, hi = _improvement(ci, e.sign)
        span = f"{_fmt(lo, e.margin_type)} to {_fmt(hi, e.margin_type)}"
        margin = _margin_text(e)
        if hi < -e.margin:
            return "dont_ship", f"{name}: worse beyond the {margin} margin ({level} CI {span})"
        if lo > -e.margin:
            return "ship", f"{name}: within the {margin} margin ({level} CI {span})"
        return "keep_running", f"{name}: {level} CI {span} still crosses the {margin} margin"
    assert e.p_adjusted is not None
    assert e.absolute_ci is not None
    lo, hi = e.relative_ci or e.absolute_ci
    kind: MarginType = "relative" if e.relative_ci else "absolute"
    span = f"{level} CI {_fmt(lo, kind)} to {_fmt(hi, kind)}"
    est_lo, est_hi = _improvement(e.absolute_ci, e.sign)
    better = est_lo + est_hi > 0  # the intervals are symmetric around the estimate
    if e.p_adjusted < e.alpha:
        verdict: Verdict = "ship" if better else "dont_ship"
        word = "better" if better else "worse"
        return verdict, (f"{name}: significantly {word} (adjusted p={e.p_adjusted:.3g} < {e.alpha}; {span})")
    return "keep_running", (
        f"{name}: no significant difference yet (adjusted p={e.p_adjusted:.3g} >= {e.alpha})"
    )


def judge(e: Evidence, srm_reason: str | None) -> tuple[Verdict, list[str]]:
    """Verdict and reasons for one comparison."""
    if srm_reason is not None:
        return "invalid", [srm_reason]
    if e.issue is not None:
        return "keep_running", [f"{e.metric}: {e.issue}"]
    verdict, reason = _bayesian(e) if e.method == "bayesian" else _frequentist(e)
    return verdict, [reason]


def decide(
    primary: list[tuple[Verdict, list[str]]],
    guardrails: list[tuple[Verdict, list[str]]],
    srm_reason: str | None,
) -> tuple[Verdict, list[str]]:
    """Overall verdict of a treatment arm.

    dont_ship if any guardrail or primary metric says so; ship if every primary metric
    says ship (or, with no primary metric, every guardrail does); otherwise keep_running.
    Guardrails not yet shown within their margin do not block shipping but are listed.
    """
    if srm_reason is not None:
        return "invalid", [srm_reason]
    reasons: list[str] = []
    failed = [r for v, rs in guardrails if v == "dont_ship" for r in rs]
    bad = [r for v, rs in primary if v == "dont_ship" for r in rs]
    if failed or bad:
        return "dont_ship", failed + bad
    deciding = primary if primary else guardrails
    for _, rs in primary + guardrails:
        reasons.extend(rs)
    if all(v == "ship" for v, _ in deciding):
        return "ship", reasons
    return "keep_running", reasons
