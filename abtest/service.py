"""Experiments: define, find, read, and check outcome events against them.

The definition is checked against the endpoint before anything is written: every arm a
deployment behind that endpoint, weights summing to 100, exactly one control. Starting,
stopping and concluding (which change the endpoint's split) are in ``lifecycle``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.abtest.models import CONCLUDED, DRAFT, Experiment
from atoll.abtest.schemas import ExperimentCreate, ExperimentRead, MetricIn
from atoll.abtest.stats import PowerRequest, power
from atoll.abtest.stats.inputs import describe
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import endpoints
from atoll.deployer.models import Deployment, Endpoint
from atoll.errors import Conflict, InvalidInput, NotFound
from atoll.registry import names

TOTAL_WEIGHT = endpoints.TOTAL_WEIGHT
#: Clock skew tolerated on an outcome's `ts` before it is refused as "in the future".
FUTURE_SKEW = timedelta(minutes=5)
_FIELD = re.compile(r"^([\w.]+): ")


def get(session: Session, key: str, *, lock: bool = False) -> Experiment:
    query = select(Experiment).where(Experiment.key == key)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFound(f"no experiment named {key!r} (list them with `atoll ab list`)", field="key")
    return found


def search(
    session: Session, *, endpoint: str | None = None, state: str | None = None, limit: int, offset: int
) -> tuple[list[Experiment], int]:
    """Newest first."""
    query = select(Experiment)
    if endpoint:
        query = query.where(Experiment.endpoint == endpoint)
    if state:
        query = query.where(Experiment.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Experiment.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def read(experiment: Experiment) -> ExperimentRead:
    return ExperimentRead.model_validate(experiment)


def metrics_of(experiment: Experiment) -> list[MetricIn]:
    return [MetricIn.model_validate(m) for m in experiment.metrics]


def control_arm(experiment: Experiment) -> str:
    return str(next(a["deployment"] for a in experiment.arms if a["control"]))


def arm_weights(experiment: Experiment) -> dict[str, int]:
    return {a["deployment"]: int(a["weight"]) for a in experiment.arms}


# --- create ------------------------------------------------------------------------------


def _check_arms(session: Session, body: ExperimentCreate, endpoint: Endpoint) -> None:
    behind = {d.name: d for _, d in endpoints.routes(session, endpoint)}
    seen: set[str] = set()
    for i, arm in enumerate(body.arms):
        field = f"arms.{i}.deployment"
        if arm.deployment in seen:
            raise InvalidInput(f"{field}: {arm.deployment!r} is listed twice", field=field)
        seen.add(arm.deployment)
        if arm.deployment in behind:
            continue
        elsewhere = session.scalar(select(Deployment).where(Deployment.name == arm.deployment))
        if elsewhere is None:
            raise InvalidInput(f"{field}: no deployment named {arm.deployment!r}", field=field)
        raise InvalidInput(
            f"{field}: {arm.deployment!r} is not behind endpoint {endpoint.name!r} "
            f"(its deployments: {', '.join(sorted(behind)) or 'none'}); deploy it with --endpoint "
            f"{endpoint.name}",
            field=field,
        )
    total = sum(a.weight for a in body.arms)
    if total != TOTAL_WEIGHT:
        raise InvalidInput(f"arms: the weights sum to {total}; they must sum to {TOTAL_WEIGHT}", field="arms")
    if any(a.weight == 0 for a in body.arms):
        raise InvalidInput("arms: every arm needs a weight above 0 (it would get no units)", field="arms")
    controls = [a.deployment for a in body.arms if a.control]
    if len(controls) != 1:
        raise InvalidInput(
            f"arms: exactly one arm is the control (found {len(controls)}: {', '.join(controls) or 'none'})",
            field="arms",
        )


def _planned_n(body: ExperimentCreate) -> int | None:
    """The planned sample per arm: given, or from the engine's power calculator."""
    if body.planned_n_per_arm is not None or body.mde is None or body.baseline is None:
        return body.planned_n_per_arm
    primary = body.primary
    if primary.type == "ratio":
        raise InvalidInput(
            "planned_n_per_arm: a ratio primary metric cannot be sized from mde and baseline; give it",
            field="planned_n_per_arm",
        )
    try:
        request = PowerRequest(
            metric_type=primary.type,
            baseline=body.baseline,
            std=body.std,
            mde=body.mde if primary.higher_is_better else -body.mde,
            alpha=body.alpha,
            power=body.power,
            arms=len(body.arms),
            method=body.method,
        )
    except ValidationError as exc:
        message = describe(exc)
        match = _FIELD.match(message)
        raise InvalidInput(message, field=match.group(1) if match else "mde") from None
    return power(request).n_per_arm


def create(session: Session, *, actor: Principal, body: ExperimentCreate) -> Experiment:
    if session.scalar(select(Experiment.id).where(Experiment.key == body.key)) is not None:
        raise Conflict(f"an experiment named {body.key!r} already exists", field="key")
    try:
        endpoint = endpoints.get(session, body.endpoint)
    except NotFound as exc:
        raise InvalidInput(f"endpoint: {exc.detail}", field="endpoint") from None
    _check_arms(session, body, endpoint)
    try:
        names.check_alias(body.promote_alias)
    except InvalidInput as exc:
        raise InvalidInput(f"promote_alias: {exc.detail}", field="promote_alias") from None
    experiment = Experiment(
        key=body.key,
        endpoint=body.endpoint,
        description=body.description,
        unit_key=body.unit_key,
        arms=[a.model_dump() for a in body.arms],
        metrics=[m.model_dump(exclude_defaults=False) for m in body.metrics],
        hypothesis=body.hypothesis,
        margin=body.margin,
        margin_type=body.margin_type,
        alpha=body.alpha,
        method=body.method,
        power=body.power,
        mde=body.mde,
        planned_n_per_arm=_planned_n(body),
        planned_end=body.planned_end,
        attribution_seconds=body.attribution_seconds,
        allocation=body.allocation,
        allocation_floor=body.allocation_floor,
        allocation_every_seconds=body.allocation_every_seconds,
        promote_alias=body.promote_alias,
        state=DRAFT,
        created_by=actor.username,
    )
    session.add(experiment)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="experiment.create",
        target_type="experiment",
        target_id=experiment.key,
        summary={
            "endpoint": body.endpoint,
            "arms": experiment.arms,
            "planned_n_per_arm": experiment.planned_n_per_arm,
        },
    )
    return experiment


# --- outcome ingestion ----------------------------------------------------------------------


def check_outcomes(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a batch naming an experiment or metric that does not exist, before anything is stored.

    One query per batch (the distinct experiments it names). Late events are accepted: the
    analysis counts an outcome when it falls in its unit's attribution window, whenever it
    arrives. Outcomes of units the split never exposed are stored and shown, not analysed.
    """
    keys = {row["experiment"] for row in rows if row.get("experiment")}
    found = {}
    if keys:
        found = {e.key: e for e in session.scalars(select(Experiment).where(Experiment.key.in_(keys)))}
    allowed = {key: {n for m in metrics_of(e) for n in m.events} for key, e in found.items()}
    latest = utcnow() + FUTURE_SKEW
    for i, row in enumerate(rows):
        key = row.get("experiment")
        ts = row.get("ts")
        if ts is not None and ts > latest:
            raise InvalidInput(
                f"events.{i}.ts: {ts.isoformat()} is in the future (the server's clock says "
                f"{utcnow().isoformat()})",
                field=f"events.{i}.ts",
            )
        if not key:
            continue
        experiment = found.get(key)
        if experiment is None:
            raise NotFound(
                f"events.{i}.experiment: no experiment named {key!r} (list them with `atoll ab list`)",
                field=f"events.{i}.experiment",
            )
        if row["metric"] not in allowed[key]:
            raise InvalidInput(
                f"events.{i}.metric: experiment {key!r} has no metric reading {row['metric']!r} "
                f"(its outcome metrics: {', '.join(sorted(allowed[key]))})",
                field=f"events.{i}.metric",
            )
        if experiment.state == CONCLUDED:
            raise Conflict(
                f"events.{i}.experiment: {key!r} is concluded; its results are final",
                field=f"events.{i}.experiment",
            )
