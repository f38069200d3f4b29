"""The live readout of an experiment: sums from the database, numbers from the engine.

Per metric one aggregate SQL statement (``sums.arm_sums``) gives each arm's n, Σy, Σy²,
Σx, Σx², Σxy; they become an ``AnalysisRequest`` for ``abtest.stats.analyze``. Primary
and guardrail metrics form the request whose decisions are the verdict; secondary metrics
are analysed in a second request, reported but never decided on (so they neither widen the
primary metric's multiplicity correction nor block a ship). The chance to beat control
comes from the same sums under the engine's Bayesian readout with a flat prior.

Under adaptive (Thompson) allocation the weights move with the data: the arms' samples are
no longer fixed-allocation samples, so the fixed-horizon p-value and the SRM check against
fixed weights do not hold. The readout then checks SRM against the observed shares (which
always passes; a note says it was not checked) and marks ``valid_p_values`` false.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.abtest import service
from atoll.abtest.models import CONCLUDED, DRAFT, STOPPED, Experiment, ExperimentResult
from atoll.abtest.schemas import ArmProgress, MetricIn, ResultsRead
from atoll.abtest.serving import serving_sums
from atoll.abtest.stats import (
    AnalysisRequest,
    AnalysisResult,
    ArmData,
    ArmSpec,
    Hypothesis,
    MetricSpec,
    analyze,
)
from atoll.abtest.sums import (
    MetricQuery,
    arm_sums,
    exposures_per_arm,
    unexposed_outcomes,
    units_in_several_arms,
)
from atoll.db import utcnow

DAY_SECONDS = 86_400.0
ADAPTIVE_NOTE = (
    "adaptive allocation: weights followed the data, so p-values and confidence intervals are not "
    "valid fixed-horizon readouts and SRM is not checked; read the posteriors (chance to beat control)"
)


def metric_query(metric: MetricIn) -> MetricQuery:
    if metric.type == "ratio":
        assert metric.numerator is not None  # MetricIn checks a ratio names both
        assert metric.denominator is not None
        return MetricQuery(type="ratio", event=metric.numerator, denominator_event=metric.denominator)
    return MetricQuery(
        type=metric.type,
        event=metric.event or metric.name,
        covariate_event=metric.covariate,
        pre_period_seconds=metric.pre_period_days * DAY_SECONDS if metric.covariate else None,
    )


def metric_sums(
    session: Session, experiment: Experiment, metric: MetricIn, until: datetime | None
) -> dict[str, ArmData]:
    if metric.serving is not None:
        return serving_sums(
            session,
            endpoint=experiment.endpoint,
            arms=[a["deployment"] for a in experiment.arms],
            metric=metric.serving,
            since=experiment.started_at or experiment.created_at,
            until=until,
        )
    return arm_sums(
        session,
        split=experiment.salt,
        arms=[a["deployment"] for a in experiment.arms],
        metric=metric_query(metric),
        attribution_seconds=float(experiment.attribution_seconds),
        until=until,
    )


def _spec(metric: MetricIn, data: dict[str, ArmData]) -> MetricSpec:
    return MetricSpec(
        name=metric.name,
        type=metric.type,
        higher_is_better=metric.higher_is_better,
        guardrail=metric.role == "guardrail",
        margin=metric.margin,
        margin_type=metric.margin_type,
        cuped=metric.covariate is not None,
        data=data,
    )


def _request(
    experiment: Experiment, specs: list[MetricSpec], units: dict[str, int], *, bayesian: bool = False
) -> AnalysisRequest:
    adaptive = experiment.allocation != "fixed"
    total = sum(units.values())
    arms = []
    for arm in experiment.arms:
        name = arm["deployment"]
        weight = arm["weight"] / 100
        if adaptive and total:  # SRM against the observed shares: not checked (see the module doc)
            weight = max(units.get(name, 0), 1) / sum(
                max(units.get(a["deployment"], 0), 1) for a in experiment.arms
            )
        arms.append(ArmSpec(name=name, weight=weight, units=units.get(name, 0)))
    tuning = experiment.planned_n_per_arm * len(experiment.arms) if experiment.planned_n_per_arm else 5000.0
    return AnalysisRequest(
        arms=arms,
        control=service.control_arm(experiment),
        metrics=specs,
        alpha=experiment.alpha,
        hypothesis=Hypothesis(
            type=experiment.hypothesis,
            margin=experiment.margin,
            margin_type=experiment.margin_type,
        ),
        method="bayesian" if bayesian else experiment.method,
        sequential_tuning=float(tuning),
    )


def _verdict(experiment: Experiment, analysis: AnalysisResult) -> tuple[str, str | None, list[str]]:
    """The experiment's verdict from the engine's per-arm decisions (evidence statuses)."""
    if not analysis.valid:
        return "invalid", None, [analysis.srm.reason or "sample ratio mismatch"]
    reasons = [
        f"{d.arm}: {d.verdict}" + (f" ({'; '.join(d.reasons)})" if d.reasons else "")
        for d in analysis.decisions
    ]
    shipped = [d.arm for d in analysis.decisions if d.verdict == "ship"]
    if shipped:
        primary = next(m for m in analysis.metrics if not m.guardrail)
        sign = 1 if primary.higher_is_better else -1
        lifts = {c.arm: sign * (c.absolute_lift or 0.0) for c in primary.comparisons}
        winner = max(shipped, key=lambda arm: lifts.get(arm, 0.0))
        return ("won" if experiment.hypothesis == "superiority" else "non_inferior"), winner, reasons
    if analysis.decisions and all(d.verdict == "dont_ship" for d in analysis.decisions):
        return "lost", None, reasons
    return "inconclusive", None, reasons


def compute(session: Session, experiment: Experiment, *, until: datetime | None = None) -> ResultsRead:
    """The readout now (or as of `until`; a stopped or concluded experiment's ends at its stop)."""
    if until is None and experiment.state in (STOPPED, CONCLUDED):
        until = experiment.stopped_at
    metrics = service.metrics_of(experiment)
    units = exposures_per_arm(session, split=experiment.salt, until=until)
    progress = [
        ArmProgress(
            arm=a["deployment"],
            deployment=a["deployment"],
            weight=a["weight"],
            units=units.get(a["deployment"], 0),
            planned=experiment.planned_n_per_arm,
        )
        for a in experiment.arms
    ]
    empty = ResultsRead(
        experiment=experiment.key,
        state=experiment.state,
        computed_at=utcnow(),
        analysis=None,
        secondary=None,
        sums={},
        chance_to_beat_control={},
        progress=progress,
        units_in_several_arms=0,
        unexposed_outcomes=0,
        verdict="inconclusive",
        winner=None,
        reasons=["not started"],
        valid_p_values=experiment.allocation == "fixed",
    )
    if experiment.state == DRAFT:
        return empty
    sums = {m.name: metric_sums(session, experiment, m, until) for m in metrics}
    decided = [_spec(m, sums[m.name]) for m in metrics if m.role != "secondary"]
    secondary = [_spec(m, sums[m.name]) for m in metrics if m.role == "secondary"]
    analysis = analyze(_request(experiment, decided, units))
    chances = analyze(_request(experiment, decided + secondary, units, bayesian=True))
    verdict, winner, reasons = _verdict(experiment, analysis)
    if experiment.allocation != "fixed":
        reasons.append(ADAPTIVE_NOTE)
    started = experiment.started_at or experiment.created_at
    events = sorted({e for m in metrics for e in m.events})
    return empty.model_copy(
        update={
            "analysis": analysis,
            "sums": sums,
            "secondary": analyze(_request(experiment, secondary, units)) if secondary else None,
            "chance_to_beat_control": {
                m.name: {c.arm: c.chance_to_beat_control for c in m.comparisons} for m in chances.metrics
            },
            "units_in_several_arms": units_in_several_arms(session, split=experiment.salt, until=until),
            "unexposed_outcomes": unexposed_outcomes(
                session, split=experiment.salt, events=events, since=started
            ),
            "verdict": verdict,
            "winner": winner,
            "reasons": reasons,
        }
    )


def snapshot(session: Session, experiment: Experiment, results: ResultsRead) -> int:
    """Store the readout's sums and lifts per arm and metric (the cumulative-lift chart). Returns rows."""
    rows = 0
    for analysis in (results.analysis, results.secondary):
        if analysis is None:
            continue
        for metric in analysis.metrics:
            comparisons = {c.arm: c for c in metric.comparisons}
            for estimate in metric.arms:
                c = comparisons.get(estimate.arm)
                data = results.sums[metric.name][estimate.arm]
                x_sum = data.denominator_sum if data.denominator_sum is not None else data.pre_sum
                x_squares = (
                    data.denominator_sum_squares if data.denominator_sum is not None else data.pre_sum_squares
                )
                session.add(
                    ExperimentResult(
                        experiment_id=experiment.id,
                        ts=results.computed_at,
                        arm=estimate.arm,
                        metric=metric.name,
                        n=data.n,
                        sum=data.sum,
                        sum_squares=data.sum_squares,
                        sum_x=x_sum,
                        sum_x_squares=x_squares,
                        sum_products=data.sum_products,
                        mean=estimate.mean,
                        absolute_lift=c.absolute_lift if c else None,
                        relative_lift=c.relative_lift if c else None,
                        relative_lower=c.relative_ci.lower if c and c.relative_ci else None,
                        relative_upper=c.relative_ci.upper if c and c.relative_ci else None,
                        p_value=c.p_value if c else None,
                    )
                )
                rows += 1
    return rows


def history(session: Session, experiment: Experiment, metric: str) -> list[ExperimentResult]:
    """The snapshots of one metric, oldest first."""
    return list(
        session.scalars(
            select(ExperimentResult)
            .where(ExperimentResult.experiment_id == experiment.id, ExperimentResult.metric == metric)
            .order_by(ExperimentResult.ts, ExperimentResult.id)
        )
    )
