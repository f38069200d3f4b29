"""Adaptive allocation: re-weight a running Thompson experiment's split from its posteriors.

On its schedule (``allocation_every_seconds``) the worker reads the primary metric's sums per
arm (the same SQL as the readout), makes a Beta posterior per arm (``adaptive``), and sets
the split to the Monte-Carlo probability that each arm is best, with the experiment's floor
per arm, as integer percent summing to 100. The change goes through ``set_weights`` with the
experiment's owner and salt (kind ``allocation``), so units keep their arm across
re-weightings only as far as the sticky hash allows: the draw per unit is fixed, the
boundaries move. An ``AllocationChange`` row keeps the weights and the posteriors behind them
(the page's share-of-traffic chart).
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll.abtest import lifecycle, results, service
from atoll.abtest.adaptive import posterior_from_sums, posterior_summary, thompson_weights
from atoll.abtest.models import RUNNING, AllocationChange, Experiment
from atoll.db import utcnow

DRAWS = 20_000


def due(experiment: Experiment, now: datetime) -> bool:
    if experiment.state != RUNNING or experiment.allocation != "thompson":
        return False
    last = experiment.reallocated_at or experiment.started_at or now
    return now - last >= timedelta(seconds=experiment.allocation_every_seconds)


def reallocate(session: Session, experiment: Experiment, *, now: datetime | None = None) -> AllocationChange:
    """Set the next split from the posteriors now (the seed is recorded with them)."""
    now = now or utcnow()
    primary = next(m for m in service.metrics_of(experiment) if m.role == "primary")
    sums = results.metric_sums(session, experiment, primary, until=None)
    bounds = (0.0, primary.max_value or 1.0)
    posteriors = {
        arm["deployment"]: posterior_from_sums(sums[arm["deployment"]], bounds=bounds)
        for arm in experiment.arms
    }
    seed = zlib.crc32(f"{experiment.salt}:{now.isoformat()}".encode())
    weights = thompson_weights(posteriors, floor_percent=experiment.allocation_floor, draws=DRAWS, seed=seed)
    summary = posterior_summary(posteriors, draws=DRAWS, seed=seed)
    previous = service.arm_weights(experiment)
    reason = "thompson: " + ", ".join(f"{s.arm} P(best)={s.probability_best:.3f}" for s in summary)
    lifecycle.reweight(
        session, experiment=experiment, to=weights, reason=f"experiment {experiment.key} {reason}"
    )
    experiment.arms = [{**arm, "weight": weights[arm["deployment"]]} for arm in experiment.arms]
    experiment.reallocated_at = now
    change = AllocationChange(
        experiment_id=experiment.id,
        ts=now,
        weights=weights,
        posterior={
            "seed": seed,
            "draws": DRAWS,
            "previous": previous,
            "arms": [s.model_dump() for s in summary],
        },
        reason=reason,
    )
    session.add(change)
    session.flush()
    return change


def history(session: Session, experiment: Experiment) -> list[AllocationChange]:
    """Oldest first."""
    return list(
        session.scalars(
            select(AllocationChange)
            .where(AllocationChange.experiment_id == experiment.id)
            .order_by(AllocationChange.id)
        )
    )
