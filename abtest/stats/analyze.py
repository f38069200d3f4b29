"""``analyze``: every metric x treatment arm against control, in one vectorised pass.

Direction convention: the relative lift is ``(m_t - m_c) / |m_c|``, so every readout
(lifts, intervals, chances, losses, margins, verdict reasons) has the sign of the
absolute difference whatever the sign of the control mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from atoll.abtest.stats import bayesian, frequentist, multiple, sequential, srm, verdict
from atoll.abtest.stats.frequentist import BoolArray, FloatArray
from atoll.abtest.stats.moments import ArmMoments, MetricMoments, metric_moments
from atoll.abtest.stats.schemas import (
    AnalysisRequest,
    AnalysisResult,
    ArmDecision,
    ArmEstimate,
    Comparison,
    Interval,
    MarginType,
    MetricResult,
    MetricSpec,
    Verdict,
)

Judged = tuple[Verdict, list[str]]
NEGATIVE_CONTROL_NOTE = (
    "control mean is negative: relative lifts are (treatment - control) / |control mean|, "
    "positive when the treatment mean is higher"
)


def _num(x: float) -> float | None:
    """JSON-safe float: None for nan/inf."""
    return float(x) if math.isfinite(x) else None


def _ci(lo: float, hi: float) -> Interval | None:
    return Interval(lower=float(lo), upper=float(hi)) if math.isfinite(lo + hi) else None


@dataclass(frozen=True)
class _Rows:
    """The comparison table: one row per (metric index, treatment arm index)."""

    metric: list[int]
    arm: list[int]
    issue: list[str | None]
    estimable: BoolArray  # both arms have usable moments (the lifts are defined)
    n_c: FloatArray
    n_t: FloatArray
    mean_c: FloatArray
    var_c: FloatArray
    effects: frequentist.Effects


@dataclass(frozen=True)
class _Readouts:
    """Every number a comparison reports, one element per row (nan where undefined)."""

    p: FloatArray
    adjusted: FloatArray
    family_size: int  # primary comparisons in the correction family
    family_alpha: float  # the per-comparison alpha of their intervals
    row_alpha: FloatArray
    multiplier: FloatArray
    relative_ok: BoolArray  # the control mean is distinguishable from zero
    abs_lo: FloatArray
    abs_hi: FloatArray
    rel_lo: FloatArray
    rel_hi: FloatArray
    chance: FloatArray
    within: FloatArray
    loss: FloatArray
    loss_control: FloatArray


def _rows(request: AnalysisRequest, names: list[str], mom: list[MetricMoments]) -> _Rows:
    ci = names.index(request.control)
    metric_idx, arm_idx, issues = [], [], []
    cols: list[list[float]] = [[] for _ in range(6)]
    use_t: list[bool] = []
    for mi, (spec, mm) in enumerate(zip(request.metrics, mom, strict=True)):
        c = mm.arms[ci]
        for ai, t in enumerate(mm.arms):
            if ai == ci:
                continue
            metric_idx.append(mi)
            arm_idx.append(ai)
            issue = c.issue and f"control {c.issue}"
            issue = issue or (t.issue and f"{names[ai]} {t.issue}")
            issues.append(issue or None)
            for col, v in zip(cols, (c.n, c.mean, c.var, t.n, t.mean, t.var), strict=True):
                col.append(float(v))
            use_t.append(spec.type == "mean")
    a = [np.asarray(col, dtype=np.float64) for col in cols]
    eff = frequentist.effects(a[0], a[1], a[2], a[3], a[4], a[5], np.asarray(use_t, dtype=bool))
    estimable = np.array([i is None for i in issues], dtype=bool)
    for i, v in enumerate(eff.var_absolute):
        if issues[i] is not None:
            continue
        if not math.isfinite(v + eff.absolute[i]):
            issues[i] = "numerical overflow: values too large to analyse"
        elif v <= 0:
            issues[i] = "zero variance in both arms: no test is possible"
    return _Rows(metric_idx, arm_idx, issues, estimable, a[0], a[3], a[1], a[2], eff)


def _margin(request: AnalysisRequest, spec: MetricSpec) -> tuple[float, MarginType] | None:
    """(tolerated worsening, its type) that applies to a metric's decision, if any."""
    if spec.guardrail:
        return spec.margin, spec.margin_type
    if request.hypothesis.type == "non_inferiority":
        return request.hypothesis.margin, request.hypothesis.margin_type
    return None


def _readouts(request: AnalysisRequest, rows: _Rows, testable: BoolArray, sign: FloatArray) -> _Readouts:
    eff = rows.effects
    k = len(rows.metric)
    alpha = request.alpha
    guard = np.array([request.metrics[m].guardrail for m in rows.metric], dtype=bool)
    n_total = rows.n_c + rows.n_t

    # --- p-values and their correction over primary metrics x treatment arms
    p = np.full(k, np.nan)
    rho = sequential.rho(alpha, request.sequential_tuning)
    if request.method == "fixed":
        p = frequentist.p_values(eff.absolute, eff.var_absolute, eff.df)
    elif request.method == "sequential":
        with np.errstate(divide="ignore", invalid="ignore"):
            p = sequential.p_values(eff.absolute / np.sqrt(eff.var_absolute), n_total, rho)
    p = np.where(testable, p, np.nan)
    family = testable & ~guard & (request.method != "bayesian")
    adjusted = p.copy()
    adjusted[family] = multiple.adjust(p[family], request.correction)
    family_alpha = multiple.interval_alpha(adjusted[family], alpha, request.correction)
    row_alpha = np.where(family, family_alpha, alpha)

    # --- the interval multiplier, and where a relative readout exists at that level
    if request.method == "sequential":
        mult = sequential.multiplier(n_total, row_alpha, rho)
    elif request.method == "fixed":
        mult = frequentist.critical_values(row_alpha, eff.df)
    else:
        mult = np.full(k, special.ndtri(1 - alpha / 2))
    rel_ok = rows.estimable & frequentist.relative_defined(rows.n_c, rows.mean_c, rows.var_c, mult)
    scale = np.where(rel_ok, np.abs(rows.mean_c), np.nan)

    nan = np.full(k, np.nan)
    chance = within = loss = loss_c = nan
    if request.method == "bayesian":
        margins = [_margin(request, request.metrics[m]) for m in rows.metric]
        tolerated = np.array([m[0] if m else 0.0 for m in margins])
        relative_margin = np.array([m is not None and m[1] == "relative" for m in margins])
        margin_abs = np.where(relative_margin, tolerated * scale, tolerated)
        b = bayesian.readout(
            eff.absolute, eff.var_absolute, scale, sign, margin_abs, request.prior_mean, request.prior_std
        )
        abs_lo, abs_hi = frequentist.intervals(b.posterior.mean, b.posterior.std**2, mult)
        rel_lo, rel_hi = abs_lo / scale, abs_hi / scale  # the control mean taken as known
        chance, within, loss, loss_c = b.chance_to_beat, b.within_margin, b.loss, b.loss_control
    else:
        abs_lo, abs_hi = frequentist.intervals(eff.absolute, eff.var_absolute, mult)
        rel_lo, rel_hi = frequentist.intervals(eff.relative, eff.var_relative, mult)
    return _Readouts(
        p=p,
        adjusted=adjusted,
        family_size=int(family.sum()),
        family_alpha=family_alpha,
        row_alpha=row_alpha,
        multiplier=mult,
        relative_ok=rel_ok,
        abs_lo=abs_lo,
        abs_hi=abs_hi,
        rel_lo=np.where(rel_ok, rel_lo, np.nan),
        rel_hi=np.where(rel_ok, rel_hi, np.nan),
        chance=chance,
        within=within,
        loss=loss,
        loss_control=loss_c,
    )


def _relative_notes(request: AnalysisRequest, rows: _Rows, r: _Readouts, i: int) -> list[str]:
    """Why a comparison has no relative readout."""
    if not rows.estimable[i]:
        return []
    mean_c = float(rows.mean_c[i])
    bayes = request.method == "bayesian"
    if not r.relative_ok[i]:
        if mean_c == 0:
            notes = ["control mean is zero: relative lift undefined"]
        else:
            se_c = math.sqrt(rows.var_c[i] / rows.n_c[i])
            notes = [
                f"control mean {mean_c:.4g} is within {float(r.multiplier[i]):.3g} standard errors "
                f"({se_c:.3g}) of zero: relative lift not reported, read the absolute lift"
            ]
        if bayes and rows.issue[i] is None:
            notes.append(
                "bayesian readout on the absolute difference with a flat prior; "
                "expected losses (fractions of the control mean) not reported"
            )
        return notes
    return []


def _metric_notes(control: ArmMoments, theta_note: str | None) -> list[str]:
    notes = [theta_note] if theta_note else []
    if control.issue is None and control.mean < 0:
        notes.append(NEGATIVE_CONTROL_NOTE)
    return notes


def _compare(
    request: AnalysisRequest,
    rows: _Rows,
    r: _Readouts,
    sign: FloatArray,
    i: int,
    names: list[str],
    srm_reason: str | None,
) -> tuple[Comparison, Judged]:
    spec = request.metrics[rows.metric[i]]
    testable = rows.issue[i] is None
    a_ci = _ci(r.abs_lo[i], r.abs_hi[i]) if testable else None
    r_ci = _ci(r.rel_lo[i], r.rel_hi[i]) if testable else None
    issue = rows.issue[i]
    margin = _margin(request, spec)
    if testable and margin is not None and margin[1] == "relative" and not r.relative_ok[i]:
        issue = "relative margin needs a control mean distinguishable from zero (use an absolute margin)"
    ev = verdict.Evidence(
        metric=spec.name,
        method=request.method,
        guardrail=spec.guardrail,
        sign=int(sign[i]),
        hypothesis=request.hypothesis.type,
        margin=margin[0] if margin else 0.0,
        margin_type=margin[1] if margin else request.hypothesis.margin_type,
        alpha=request.alpha,
        ci_level=float(1 - r.row_alpha[i]),
        p_adjusted=_num(r.adjusted[i]),
        absolute_ci=(a_ci.lower, a_ci.upper) if a_ci else None,
        relative_ci=(r_ci.lower, r_ci.upper) if r_ci else None,
        prob_better=_num(r.chance[i]),
        prob_within_margin=_num(r.within[i]),
        issue=issue,
    )
    v, reasons = verdict.judge(ev, srm_reason)
    eff = rows.effects
    comparison = Comparison(
        arm=names[rows.arm[i]],
        absolute_lift=_num(eff.absolute[i]) if rows.estimable[i] else None,
        absolute_ci=a_ci,
        relative_lift=_num(eff.relative[i]) if r.relative_ok[i] else None,
        relative_ci=r_ci,
        ci_level=float(1 - r.row_alpha[i]),
        p_value=_num(r.p[i]),
        adjusted_p_value=_num(r.adjusted[i]),
        chance_to_beat_control=_num(r.chance[i]) if testable else None,
        expected_loss=_num(r.loss[i]) if testable else None,
        expected_loss_control=_num(r.loss_control[i]) if testable else None,
        verdict=v,
        reasons=reasons + _relative_notes(request, rows, r, i),
    )
    return comparison, (v, reasons)


def analyze(request: AnalysisRequest) -> AnalysisResult:
    """Analyse every metric of ``request``: each treatment arm against the control."""
    names = [a.name for a in request.arms]
    mom = [metric_moments(m, names) for m in request.metrics]
    observed = {
        a.name: a.units if a.units is not None else max(m.data[a.name].n for m in request.metrics)
        for a in request.arms
    }
    srm_res = srm.check(observed, {a.name: a.weight for a in request.arms})
    srm_reason = srm_res.reason if srm_res.mismatch else None

    rows = _rows(request, names, mom)
    testable = np.array([i is None for i in rows.issue], dtype=bool)
    sign = np.array([1.0 if request.metrics[m].higher_is_better else -1.0 for m in rows.metric])
    readouts = _readouts(request, rows, testable, sign)

    comparisons: list[list[Comparison]] = [[] for _ in request.metrics]
    per_arm: dict[int, tuple[list[Judged], list[Judged]]] = {
        ai: ([], []) for ai in range(len(names)) if names[ai] != request.control
    }
    for i in range(len(rows.metric)):
        comparison, judged = _compare(request, rows, readouts, sign, i, names, srm_reason)
        guardrail = request.metrics[rows.metric[i]].guardrail
        per_arm[rows.arm[i]][1 if guardrail else 0].append(judged)
        comparisons[rows.metric[i]].append(comparison)

    metrics = [
        MetricResult(
            name=spec.name,
            type=spec.type,
            guardrail=spec.guardrail,
            higher_is_better=spec.higher_is_better,
            cuped_theta=_num(mm.theta) if mm.theta is not None else None,
            notes=_metric_notes(mm.arms[names.index(request.control)], mm.note),
            arms=[
                ArmEstimate(
                    arm=names[j],
                    n=am.n,
                    mean=_num(am.mean) if am.n > 0 else None,
                    std=_num(math.sqrt(am.var)) if am.issue is None else None,
                )
                for j, am in enumerate(mm.arms)
            ],
            comparisons=comparisons[mi],
        )
        for mi, (spec, mm) in enumerate(zip(request.metrics, mom, strict=True))
    ]
    decisions = [
        ArmDecision(arm=names[ai], verdict=v, reasons=rs)
        for ai, (prim, guards) in per_arm.items()
        for v, rs in [verdict.decide(prim, guards, srm_reason)]
    ]
    return AnalysisResult(
        method=request.method,
        alpha=request.alpha,
        hypothesis=request.hypothesis,
        control=request.control,
        correction=request.correction if request.method != "bayesian" else "none",
        correction_note=_correction_note(request, readouts.family_size, readouts.family_alpha),
        srm=srm_res,
        valid=srm_reason is None,
        metrics=metrics,
        decisions=decisions,
    )


def _correction_note(request: AnalysisRequest, m: int, family_alpha: float) -> str:
    if request.method == "bayesian":
        return "no correction: Bayesian readouts report posterior probabilities"
    guard = "; guardrail metrics are not corrected (that would hide harm)"
    if request.correction == "none" or m <= 1:
        return f"no correction applied ({m} primary comparison(s)){guard}"
    how = {
        "holm": "Holm step-down (family-wise error); intervals Bonferroni",
        "bh": "Benjamini-Hochberg (false discovery rate); intervals Benjamini-Yekutieli FCR",
    }[request.correction]
    return (
        f"{how}, over {m} comparisons (primary metrics x treatment arms), "
        f"intervals at {1 - family_alpha:.6g}{guard}"
    )
