"""``analyze``: every metric x treatment arm against control, in one vectorised pass."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from atoll.abtest.stats import bayesian, frequentist, multiple, sequential, srm, verdict
from atoll.abtest.stats.frequentist import FloatArray
from atoll.abtest.stats.moments import MetricMoments, metric_moments
from atoll.abtest.stats.schemas import (
    AnalysisRequest,
    AnalysisResult,
    ArmDecision,
    ArmEstimate,
    Comparison,
    Interval,
    MetricResult,
    Verdict,
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
    estimable: list[bool]  # both arms have usable moments (the lifts are defined)
    n_c: FloatArray
    n_t: FloatArray
    mean_c: FloatArray
    effects: frequentist.Effects


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
    estimable = [i is None for i in issues]
    for i, v in enumerate(eff.var_absolute):
        if issues[i] is not None:
            continue
        if not math.isfinite(v + eff.absolute[i]):
            issues[i] = "numerical overflow: values too large to analyse"
        elif v <= 0:
            issues[i] = "zero variance in both arms: no test is possible"
    return _Rows(metric_idx, arm_idx, issues, estimable, a[0], a[3], a[1], eff)


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
    eff = rows.effects
    k = len(rows.metric)
    alpha = request.alpha
    testable = np.array([i is None for i in rows.issue], dtype=bool)
    guard = np.array([request.metrics[m].guardrail for m in rows.metric], dtype=bool)
    sign = np.array([1.0 if request.metrics[m].higher_is_better else -1.0 for m in rows.metric])
    n_total = rows.n_c + rows.n_t
    se = np.sqrt(eff.var_absolute)

    # --- p-values and their correction over primary metrics x treatment arms
    p = np.full(k, np.nan)
    rho = sequential.rho(alpha, request.sequential_tuning)
    if request.method == "fixed":
        p = frequentist.p_values(eff.absolute, eff.var_absolute, eff.df)
    elif request.method == "sequential":
        with np.errstate(divide="ignore", invalid="ignore"):
            p = sequential.p_values(eff.absolute / se, n_total, rho)
    p = np.where(testable, p, np.nan)
    family = testable & ~guard & (request.method != "bayesian")
    adjusted = p.copy()
    adjusted[family] = multiple.adjust(p[family], request.correction)
    family_alpha = multiple.interval_alpha(adjusted[family], alpha, request.correction)
    row_alpha = np.where(family, family_alpha, alpha)

    # --- intervals
    if request.method == "sequential":
        mult_abs = mult_rel = sequential.multiplier(n_total, row_alpha, rho)
    elif request.method == "fixed":
        mult_abs = mult_rel = frequentist.critical_values(row_alpha, eff.df)
    else:
        mult_abs = mult_rel = np.full(k, stats.norm.ppf(1 - alpha / 2))
    abs_lo, abs_hi = frequentist.intervals(eff.absolute, eff.var_absolute, mult_abs)
    rel_lo, rel_hi = frequentist.intervals(eff.relative, eff.var_relative, mult_rel)

    # --- bayesian posterior of the relative lift (absolute, flat, where undefined)
    rel_ok = np.isfinite(eff.relative) & np.isfinite(eff.var_relative) & (eff.var_relative > 0)
    ctw = loss = loss_c = within = np.full(k, np.nan)
    if request.method == "bayesian":
        post_rel = bayesian.posterior(eff.relative, eff.var_relative, request.prior_mean, request.prior_std)
        post = bayesian.Posterior(
            np.where(rel_ok, post_rel.mean, eff.absolute), np.where(rel_ok, post_rel.std, se)
        )
        rel_lo, rel_hi = frequentist.intervals(post.mean, post.std**2, mult_rel)
        rel_lo, rel_hi = np.where(rel_ok, rel_lo, np.nan), np.where(rel_ok, rel_hi, np.nan)
        margins = np.array([_bayes_margin(request, m) for m in rows.metric])
        mc = np.abs(rows.mean_c)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(
                rel_ok,
                np.where(margins[:, 1] == 1.0, 1.0 / mc, 1.0),
                np.where(margins[:, 1] == 1.0, 1.0, mc),
            )
        thr = -sign * margins[:, 0] * scale
        ctw = bayesian.prob_greater(post, np.zeros(k), sign)
        within = bayesian.prob_greater(post, thr, sign)
        loss, loss_c = bayesian.expected_losses(post, sign)
        loss, loss_c = np.where(rel_ok, loss, np.nan), np.where(rel_ok, loss_c, np.nan)

    comparisons: list[list[Comparison]] = [[] for _ in request.metrics]
    per_arm: dict[int, tuple[list[tuple[Verdict, list[str]]], list[tuple[Verdict, list[str]]]]] = {
        ai: ([], []) for ai in range(len(names)) if names[ai] != request.control
    }
    for i in range(k):
        spec = request.metrics[rows.metric[i]]
        ok = bool(testable[i])
        a_ci = _ci(abs_lo[i], abs_hi[i]) if ok else None
        r_ci = _ci(rel_lo[i], rel_hi[i]) if ok else None
        zero_c = rows.estimable[i] and rows.mean_c[i] == 0
        notes = ["control mean is zero: relative lift undefined"] if zero_c else []
        issue = rows.issue[i]
        if ok and request.method == "bayesian" and not rel_ok[i]:
            notes.append("bayesian readout on the absolute difference with a flat prior")
        margin_type = spec.margin_type if spec.guardrail else request.hypothesis.margin_type
        margin_used = spec.guardrail or request.hypothesis.type == "non_inferiority"
        frequentist_rel = request.method != "bayesian" and margin_type == "relative"
        if ok and margin_used and frequentist_rel and r_ci is None:
            issue = "relative margin needs a non-zero control mean"
        ev = verdict.Evidence(
            metric=spec.name,
            method=request.method,
            guardrail=spec.guardrail,
            sign=int(sign[i]),
            hypothesis=request.hypothesis.type,
            margin=spec.margin if spec.guardrail else request.hypothesis.margin,
            margin_type=margin_type,
            alpha=alpha,
            ci_level=float(1 - row_alpha[i]),
            p_adjusted=_num(adjusted[i]),
            absolute_ci=(a_ci.lower, a_ci.upper) if a_ci else None,
            relative_ci=(r_ci.lower, r_ci.upper) if r_ci else None,
            prob_better=_num(ctw[i]),
            prob_within_margin=_num(within[i]),
            issue=issue,
        )
        v, reasons = verdict.judge(ev, srm_reason)
        per_arm[rows.arm[i]][1 if spec.guardrail else 0].append((v, reasons))
        comparisons[rows.metric[i]].append(
            Comparison(
                arm=names[rows.arm[i]],
                absolute_lift=_num(eff.absolute[i]) if rows.estimable[i] else None,
                absolute_ci=a_ci,
                relative_lift=_num(eff.relative[i]) if rows.estimable[i] else None,
                relative_ci=r_ci,
                ci_level=float(1 - row_alpha[i]),
                p_value=_num(p[i]),
                adjusted_p_value=_num(adjusted[i]),
                chance_to_beat_control=_num(ctw[i]),
                expected_loss=_num(loss[i]),
                expected_loss_control=_num(loss_c[i]),
                verdict=v,
                reasons=reasons + notes,
            )
        )

    metrics = [
        MetricResult(
            name=spec.name,
            type=spec.type,
            guardrail=spec.guardrail,
            higher_is_better=spec.higher_is_better,
            cuped_theta=_num(mm.theta) if mm.theta is not None else None,
            notes=[mm.note] if mm.note else [],
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
        alpha=alpha,
        hypothesis=request.hypothesis,
        control=request.control,
        correction=request.correction if request.method != "bayesian" else "none",
        correction_note=_correction_note(request, int(family.sum()), family_alpha),
        srm=srm_res,
        valid=srm_reason is None,
        metrics=metrics,
        decisions=decisions,
    )


def _bayes_margin(request: AnalysisRequest, metric_index: int) -> tuple[float, float]:
    """(margin, 1.0 if absolute else 0.0) that applies to a metric's decision."""
    spec = request.metrics[metric_index]
    if spec.guardrail:
        return spec.margin, float(spec.margin_type == "absolute")
    if request.hypothesis.type == "non_inferiority":
        return request.hypothesis.margin, float(request.hypothesis.margin_type == "absolute")
    return 0.0, 0.0


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
