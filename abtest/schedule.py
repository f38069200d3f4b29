"""The experiments' periodic job: re-weight adaptive experiments that are due, and snapshot
every running experiment's readout (the cumulative-lift chart) once per period.

One experiment's failure (a deployment no longer available, a canary holding the endpoint)
is reported in the job's result and rolled back on its own (a savepoint), never stopping the
others.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll.abtest import allocation, results
from atoll.abtest.models import RUNNING, Experiment, ExperimentResult
from atoll.db import utcnow
from atoll.errors import AtollError

EXPERIMENTS_JOB = "abtest.tick"
TICK_SECONDS = 60.0
SNAPSHOT_EVERY = timedelta(minutes=5)


def _snapshot_due(session: Session, experiment: Experiment) -> bool:
    last = session.scalar(
        select(func.max(ExperimentResult.ts)).where(ExperimentResult.experiment_id == experiment.id)
    )
    return last is None or utcnow() - last >= SNAPSHOT_EVERY


def tick(session: Session, _payload: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    done: dict[str, Any] = {"reallocated": {}, "snapshots": 0, "errors": {}}
    for experiment in session.scalars(
        select(Experiment).where(Experiment.state == RUNNING).order_by(Experiment.id)
    ):
        try:
            with session.begin_nested():
                if allocation.due(experiment, now):
                    done["reallocated"][experiment.key] = allocation.reallocate(
                        session, experiment, now=now
                    ).weights
                if _snapshot_due(session, experiment):
                    done["snapshots"] += results.snapshot(
                        session, experiment, results.compute(session, experiment)
                    )
        except AtollError as exc:
            done["errors"][experiment.key] = exc.detail
    return done
