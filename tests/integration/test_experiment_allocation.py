"""Adaptive allocation through the database: the periodic job re-weights a Thompson experiment's
split from its posteriors (owner, salt, kind `allocation`, floors, 100 in all), and the whole
loop (exposures -> SQL sums -> posteriors -> split) loses fewer conversions than a fixed
50/50 split on a simulated two-arm Bernoulli problem (seeded)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from atoll.abtest import allocation, service
from atoll.abtest.models import AllocationChange, ExperimentResult
from atoll.abtest.schedule import tick
from atoll.db import unit_of_work
from atoll.deployer import endpoints
from atoll.deployer.models import EndpointChange

from .conftest import Caller
from .experimenting import definition, expose, outcomes, serve

API = "/api/v1/experiments"


def _thompson(client: TestClient, caller: Caller, key: str, **extra: Any) -> dict[str, Any]:
    body = definition(
        key, "recs", {"blue": 50, "green": 50}, "blue", allocation="thompson", allocation_floor=10, **extra
    )
    assert client.post(API, headers=caller.headers, json=body).status_code == 201
    started = client.post(f"{API}/{key}/start", headers=caller.headers)
    assert started.status_code == 200, started.text
    result: dict[str, Any] = started.json()
    return result


def _round(
    factory: sessionmaker[Session],
    experiment: dict[str, Any],
    weights: dict[str, int],
    rates: dict[str, float],
    *,
    units: int,
    at: datetime,
    rng: np.random.Generator,
    offset: int,
    prefix: str = "u",
) -> float:
    """New units split by `weights`, their conversions posted; returns this round's regret."""
    arms = list(weights)
    picks = rng.choice(len(arms), size=units, p=[weights[a] / 100 for a in arms])
    assigned = {f"{prefix}{offset + i}": arms[int(k)] for i, k in enumerate(picks)}
    converted = [(u, "purchase", 1.0) for u, arm in assigned.items() if rng.random() < rates[arm]]
    with unit_of_work(factory) as session:
        expose(session, split=experiment["salt"], endpoint="recs", units=assigned, at=at)
        outcomes(session, converted, at=at + timedelta(seconds=10))
    best = max(rates.values())
    return float(sum(best - rates[arm] for arm in assigned.values()))


def test_the_job_reweights_a_due_thompson_experiment_within_its_floors(
    client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
) -> None:
    serve(session_factory, "recs", {"blue": 100, "green": 0})
    experiment = _thompson(client, admin, "recs-ts", allocation_every_seconds=60)
    start = datetime.fromisoformat(experiment["started_at"])
    rng = np.random.default_rng(1)
    _round(
        session_factory, experiment, {"blue": 50, "green": 50}, {"blue": 0.05, "green": 0.3},
        units=400, at=start + timedelta(seconds=1), rng=rng, offset=0,
    )  # fmt: skip
    with unit_of_work(session_factory) as session:
        assert tick(session, {})["reallocated"] == {}, "not due before allocation_every_seconds"
        found = service.get(session, "recs-ts")
        found.reallocated_at = start - timedelta(minutes=2)  # the period has passed
    with unit_of_work(session_factory) as session:
        done = tick(session, {})
    weights = done["reallocated"]["recs-ts"]
    assert sum(weights.values()) == 100
    assert weights["green"] == 90  # P(best) ~ 1, held down to leave blue its 10% floor
    with unit_of_work(session_factory) as session:
        split = endpoints.get(session, "recs")
        assert endpoints.weights(session, split) == weights
        assert (split.split_salt, split.traffic_owner) == (experiment["salt"], "experiment:recs-ts")
        last = session.scalars(select(EndpointChange).order_by(EndpointChange.id.desc())).first()
        assert last is not None
        assert last.kind == "allocation"
        change = session.scalars(select(AllocationChange)).one()
        arms = {a["arm"]: a for a in change.posterior["arms"]}
        assert arms["green"]["probability_best"] > 0.99
        assert session.scalars(select(ExperimentResult)).first() is not None, "the tick snapshots the readout"
    readout = client.get(f"{API}/recs-ts/results", headers=admin.headers).json()
    blue = readout["sums"]["conversion"]["blue"]
    assert (arms["blue"]["alpha"], arms["blue"]["beta"]) == (1 + blue["sum"], 1 + blue["n"] - blue["sum"])
    assert readout["valid_p_values"] is False
    assert any("adaptive allocation" in r for r in readout["reasons"])


def test_thompson_through_the_database_loses_fewer_conversions_than_a_fixed_split(
    client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
) -> None:
    serve(session_factory, "recs", {"blue": 100, "green": 0})
    rates = {"blue": 0.10, "green": 0.16}
    regret = {"thompson": 0.0, "fixed": 0.0}
    for repetition in range(3):
        experiment = _thompson(client, admin, f"bandit-{repetition}")
        start = datetime.fromisoformat(experiment["started_at"])
        rng = np.random.default_rng(100 + repetition)
        weights = {"blue": 50, "green": 50}
        for step in range(8):
            at = start + timedelta(minutes=step)
            offset = 10_000 * step
            regret["thompson"] += _round(
                session_factory, experiment, weights, rates, units=400, at=at, rng=rng, offset=offset,
                prefix=f"r{repetition}-",
            )  # fmt: skip
            regret["fixed"] += 400 * 0.5 * (rates["green"] - rates["blue"])  # expected loss of 50/50
            with unit_of_work(session_factory) as session:
                found = service.get(session, experiment["key"])
                weights = allocation.reallocate(session, found, now=at + timedelta(seconds=30)).weights
        assert client.post(f"{API}/{experiment['key']}/stop", headers=admin.headers).status_code == 200
    assert regret["thompson"] < 0.6 * regret["fixed"], regret
