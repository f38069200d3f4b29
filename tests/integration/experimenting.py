"""Helpers for the experiment tests: an endpoint with available deployments (database rows,
no model servers: the split, exposures and outcomes live in the database), exposures as the
router writes them, and outcomes as a service sends them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from atoll.abtest.stats import AnalysisRequest, ArmData, ArmSpec, MetricSpec
from atoll.db import unit_of_work, utcnow
from atoll.deployer import endpoints, states
from atoll.deployer.models import Deployment
from atoll.events import ExposureEvent, OutcomeEvent
from atoll.registry.models import Build


def serve(
    factory: sessionmaker[Session],
    endpoint: str,
    weights: Mapping[str, int],
    *,
    model: str = "ranker",
    versions: Mapping[str, int] | None = None,
    state: str = states.AVAILABLE,
) -> None:
    """Put available deployments behind `endpoint` (created if new) with these weights."""
    with unit_of_work(factory) as session:
        found = endpoints.ensure(session, actor=None, name=endpoint)
        for i, name in enumerate(weights):
            version = (versions or {}).get(name, i + 1)
            build = Build(model_name=model, version=version, backend="cpu", status="succeeded")
            session.add(build)
            session.flush()
            deployment = Deployment(
                name=name,
                model_name=model,
                version=version,
                backend="cpu",
                build_id=build.id,
                target="local",
                state=state,
                address="http://127.0.0.1:9",
                created_by="test",
            )
            session.add(deployment)
            session.flush()
            endpoints.attach(session, endpoint=found, deployment=deployment, actor=None, reason="test")
        if state == states.AVAILABLE:
            endpoints.set_weights(session, actor=None, name=endpoint, to=dict(weights), reason="test")


def expose(
    session: Session, *, split: str, endpoint: str, units: Mapping[str, str], at: datetime | None = None
) -> None:
    """Exposure rows as the router writes them: unit -> deployment, at `at` (default now)."""
    when = at or utcnow()
    rows = [
        {"ts": when, "split": split, "deployment": arm, "unit_id": unit, "endpoint": endpoint}
        for unit, arm in units.items()
    ]
    if rows:
        session.execute(insert(ExposureEvent), rows)


def outcomes(
    session: Session,
    rows: Sequence[tuple[str, str, float]],
    *,
    at: datetime | None = None,
    experiment: str | None = None,
) -> None:
    """Outcome rows (unit, metric, value) as ingestion stores them."""
    when = at or utcnow() + timedelta(seconds=1)
    values: list[dict[str, Any]] = [
        {
            "event_id": f"{unit}-{metric}-{i}",
            "ts": when,
            "unit_id": unit,
            "metric": metric,
            "value": value,
            "experiment": experiment,
            "received_at": when,
        }
        for i, (unit, metric, value) in enumerate(rows)
    ]
    if values:
        session.execute(insert(OutcomeEvent), values)


def definition(
    key: str, endpoint: str, arms: Mapping[str, int], control: str, **extra: Any
) -> dict[str, Any]:
    """An experiment definition: a binary primary metric `conversion` unless `metrics` is given."""
    body: dict[str, Any] = {
        "key": key,
        "endpoint": endpoint,
        "arms": [{"deployment": d, "weight": w, "control": d == control} for d, w in arms.items()],
        "metrics": [{"name": "conversion", "type": "binary", "event": "purchase"}],
    }
    body.update(extra)
    return body


def hand_request(experiment: Mapping[str, Any], converted: Mapping[str, Sequence[int]]) -> AnalysisRequest:
    """The engine's request for the binary primary metric `conversion`, from sums computed in
    Python over each arm's units (1 converted, 0 not): what the readout must equal."""

    def data(values: Sequence[int]) -> ArmData:
        return ArmData(n=len(values), sum=float(sum(values)), sum_squares=float(sum(v * v for v in values)))

    arms = experiment["arms"]
    planned = experiment["planned_n_per_arm"]
    return AnalysisRequest(
        arms=[
            ArmSpec(name=a["deployment"], weight=a["weight"] / 100, units=len(converted[a["deployment"]]))
            for a in arms
        ],
        control=next(a["deployment"] for a in arms if a["control"]),
        metrics=[
            MetricSpec(name="conversion", type="binary", data={a: data(v) for a, v in converted.items()})
        ],
        alpha=experiment["alpha"],
        sequential_tuning=float(planned * len(arms)) if planned else 5000.0,
    )
