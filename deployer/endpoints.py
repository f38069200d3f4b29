"""Endpoints: a stable name, the deployments behind it with their weights, and the history.

An endpoint's routes are (endpoint, deployment, weight) rows. Their weights are percent and
sum to 100 once the endpoint serves; before its first deployment is available they are all
0 (`check_weights`). A switch moves all traffic to one deployment at once and keeps the
others' routes at 0: they stay deployed, warm, until undeployed (blue/green). Every change
writes an `EndpointChange` (from, to, who, why, which job) and an audit row, in the
caller's transaction, so the two are never out of step with the routes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import states
from atoll.deployer.models import Deployment, Endpoint, EndpointChange, EndpointRoute
from atoll.deployer.schemas import (
    ON_ALIAS_MOVE_PATTERN,
    UNIT_FIELD_PATTERN,
    UNIT_HEADER_PATTERN,
    EndpointRead,
    RouteRead,
)
from atoll.errors import Conflict, InvalidInput, NotFound

TOTAL_WEIGHT = 100
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Settings the platform reads, each with its check (a value of None means "the default"; a
# full match, so no trailing newline slips through `$`); the API's EndpointSettings states
# the same patterns in the OpenAPI document.
SETTINGS_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "unit_header": (
        re.compile(UNIT_HEADER_PATTERN),
        "a header name of letters, digits and '-', e.g. X-Customer-Id",
    ),
    "unit_field": (
        re.compile(UNIT_FIELD_PATTERN),
        "a JSON field or a dotted path to one, e.g. customer.id",
    ),
    "on_alias_move": (
        re.compile(ON_ALIAS_MOVE_PATTERN),
        "'switch' or 'canary': how a deployment that follows an alias rolls when the alias moves",
    ),
}


def check_endpoint_name(name: str) -> str:
    if len(name) > 63 or not _DNS_1123_LABEL.match(name):
        raise InvalidInput(
            f"{name!r} is not a valid endpoint name: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (a DNS-1123 label), e.g. 'fraud-scoring'",
            field="endpoint",
        )
    return name


def check_weights(weights: Mapping[str, int]) -> None:
    """Each weight in 0..100; together 100 (serving) or all 0 (nothing available yet)."""
    for deployment, weight in weights.items():
        if not 0 <= weight <= TOTAL_WEIGHT:
            raise InvalidInput(
                f"weights: {deployment} has {weight}; a weight is 0 to {TOTAL_WEIGHT}", field="weights"
            )
    total = sum(weights.values())
    if total not in (0, TOTAL_WEIGHT):
        raise InvalidInput(f"weights: they sum to {total}; they must sum to {TOTAL_WEIGHT}", field="weights")


def check_settings(patch: Mapping[str, object]) -> None:
    """Known keys only, each valid (or None, which removes it); 422 naming the key otherwise."""
    for key, value in patch.items():
        if key not in SETTINGS_RULES:
            known = ", ".join(sorted(SETTINGS_RULES))
            raise InvalidInput(
                f"settings: {key!r} is not a setting of an endpoint (known: {known})", field="settings"
            )
        pattern, what = SETTINGS_RULES[key]
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise InvalidInput(f"settings: {key} must be {what}; got {value!r}", field="settings")


def actor_name(actor: Principal | None) -> str:
    return actor.username if actor else audit.SYSTEM_ACTOR


def get(session: Session, name: str, *, lock: bool = False) -> Endpoint:
    query = select(Endpoint).where(Endpoint.name == name)
    found = session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise NotFound(f"no endpoint named {name!r} (list them with `atoll endpoints`)")
    return found


def routes(session: Session, endpoint: Endpoint) -> list[tuple[EndpointRoute, Deployment]]:
    rows = session.execute(
        select(EndpointRoute, Deployment)
        .join(Deployment, Deployment.id == EndpointRoute.deployment_id)
        .where(EndpointRoute.endpoint_id == endpoint.id)
        .order_by(EndpointRoute.weight.desc(), Deployment.name)
    )
    return [(route, deployment) for route, deployment in rows]


def weights(session: Session, endpoint: Endpoint) -> dict[str, int]:
    return {deployment.name: route.weight for route, deployment in routes(session, endpoint)}


def _change(
    session: Session,
    endpoint: Endpoint,
    *,
    kind: str,
    before: dict[str, int],
    actor: Principal | None,
    reason: str,
    job_id: int | None,
    summary: dict[str, object] | None = None,
) -> EndpointChange:
    session.flush()
    after = weights(session, endpoint)
    check_weights(after)
    endpoint.updated_at = utcnow()
    change = EndpointChange(
        endpoint_id=endpoint.id,
        kind=kind,
        split_salt=endpoint.split_salt,
        from_weights=before,
        to_weights=after,
        actor=actor_name(actor),
        reason=reason,
        job_id=job_id,
    )
    session.add(change)
    audit.record(
        session,
        actor=actor,
        action=f"endpoint.{kind}",
        target_type="endpoint",
        target_id=endpoint.name,
        summary={"from": before, "to": after, "reason": reason, "job_id": job_id, **(summary or {})},
    )
    return change


def create(
    session: Session,
    *,
    actor: Principal | None,
    name: str,
    description: str = "",
    settings: dict[str, object] | None = None,
    reason: str = "",
) -> Endpoint:
    check_endpoint_name(name)
    check_settings(settings or {})
    if session.scalar(select(Endpoint.id).where(Endpoint.name == name)) is not None:
        raise Conflict(f"endpoint {name!r} already exists", field="name")
    endpoint = Endpoint(
        name=name, description=description, settings=dict(settings or {}), created_by=actor_name(actor)
    )
    session.add(endpoint)
    session.flush()
    _change(session, endpoint, kind="create", before={}, actor=actor, reason=reason, job_id=None)
    return endpoint


def ensure(session: Session, *, actor: Principal | None, name: str, reason: str = "") -> Endpoint:
    check_endpoint_name(name)
    found = session.scalar(select(Endpoint).where(Endpoint.name == name))
    return found or create(session, actor=actor, name=name, reason=reason)


def attach(
    session: Session, *, endpoint: Endpoint, deployment: Deployment, actor: Principal | None, reason: str
) -> None:
    """Put a deployment behind an endpoint at weight 0: deployed, serving nothing yet."""
    if deployment.endpoint_id not in (None, endpoint.id):
        raise Conflict(
            f"deployment {deployment.name!r} already belongs to another endpoint", field="endpoint"
        )
    deployment.endpoint_id = endpoint.id
    if session.get(EndpointRoute, (endpoint.id, deployment.id)) is not None:
        return
    before = weights(session, endpoint)
    session.add(EndpointRoute(endpoint_id=endpoint.id, deployment_id=deployment.id, weight=0))
    _change(
        session,
        endpoint,
        kind="attach",
        before=before,
        actor=actor,
        reason=reason,
        job_id=None,
        summary={"deployment": deployment.name},
    )


def switch(
    session: Session,
    *,
    actor: Principal | None,
    name: str,
    to: str,
    reason: str = "",
    job_id: int | None = None,
    owner: str | None = None,
) -> EndpointChange | None:
    """All traffic to `to` at once; the others stay at 0, warm. None when `to` already had it all."""
    endpoint = get(session, name, lock=True)
    current = routes(session, endpoint)
    target = next((d for _, d in current if d.name == to), None)
    if target is None:
        behind = ", ".join(d.name for _, d in current) or "none"
        raise Conflict(
            f"deployment {to!r} is not behind endpoint {name!r} (its deployments: {behind}); deploy it with "
            f"--endpoint {name}",
            field="to",
        )
    if target.state != states.AVAILABLE:
        raise Conflict(
            f"deployment {to!r} is {target.state}, not available: switching {name!r} to it would fail "
            "requests; wait for its rollout (atoll deployments show " + to + ")",
            field="to",
        )
    check_owner(endpoint, owner, field="to")
    before = {d.name: r.weight for r, d in current}
    if before.get(to) == TOTAL_WEIGHT:
        return None
    for route, deployment in current:
        route.weight = TOTAL_WEIGHT if deployment.id == target.id else 0
    return _change(
        session,
        endpoint,
        kind="switch",
        before=before,
        actor=actor,
        reason=reason,
        job_id=job_id,
        summary={"to": to},
    )


def check_owner(endpoint: Endpoint, owner: str | None, *, field: str) -> None:
    """While a canary or an experiment controls the split, only it may change the weights."""
    if endpoint.traffic_owner is not None and endpoint.traffic_owner != owner:
        raise Conflict(
            f"endpoint {endpoint.name!r}'s traffic is controlled by {endpoint.traffic_owner}; "
            "stop or abort it first (atoll canary abort / atoll ab stop)",
            field=field,
            owner=endpoint.traffic_owner,
        )


def set_weights(
    session: Session,
    *,
    actor: Principal | None,
    name: str,
    to: Mapping[str, int],
    reason: str = "",
    kind: str = "split",
    job_id: int | None = None,
    owner: str | None = None,
    salt: str | None = None,
) -> EndpointChange | None:
    """Set an endpoint's weights at once (deployments left out get 0). None when nothing changes.

    The primitive under splits, canaries and experiments: every weighted change goes through
    here, in the caller's transaction, so a split is never half-applied. `owner` must match
    the endpoint's `traffic_owner` when one is set; `salt` (an experiment's own) replaces the
    split salt, which reshuffles sticky units.
    """
    endpoint = get(session, name, lock=True)
    check_owner(endpoint, owner, field="weights")
    current = routes(session, endpoint)
    by_name = {d.name: (r, d) for r, d in current}
    strangers = sorted(set(to) - set(by_name))
    if strangers:
        behind = ", ".join(sorted(by_name)) or "none"
        raise InvalidInput(
            f"weights: {', '.join(strangers)} {'is' if len(strangers) == 1 else 'are'} not behind endpoint "
            f"{name!r} (its deployments: {behind})",
            field="weights",
        )
    wanted = {deployment: to.get(deployment, 0) for deployment in by_name}
    check_weights(wanted)
    if sum(wanted.values()) != TOTAL_WEIGHT:
        raise InvalidInput(f"weights: they sum to 0; they must sum to {TOTAL_WEIGHT}", field="weights")
    for deployment_name, weight in wanted.items():
        deployment = by_name[deployment_name][1]
        if weight > 0 and deployment.state != states.AVAILABLE:
            raise Conflict(
                f"weights: deployment {deployment_name!r} is {deployment.state}, not available; it can "
                "take traffic once its rollout is done",
                field="weights",
            )
    before = {d.name: r.weight for r, d in current}
    if before == wanted and (salt is None or salt == endpoint.split_salt):
        return None
    for route, deployment in current:
        route.weight = wanted[deployment.name]
    if salt is not None:
        endpoint.split_salt = salt
    return _change(session, endpoint, kind=kind, before=before, actor=actor, reason=reason, job_id=job_id)


def claim_traffic(session: Session, *, name: str, owner: str) -> Endpoint:
    """Make `owner` the only one who may change the split (409 if another holds it)."""
    endpoint = get(session, name, lock=True)
    check_owner(endpoint, owner, field="endpoint")
    endpoint.traffic_owner = owner
    return endpoint


def release_traffic(session: Session, *, name: str, owner: str) -> None:
    endpoint = get(session, name, lock=True)
    if endpoint.traffic_owner == owner:
        endpoint.traffic_owner = None


def detach(
    session: Session, *, deployment: Deployment, actor: Principal | None, reason: str
) -> EndpointChange | None:
    """Take a deployment out of its endpoint (undeploy). Its traffic, if any, goes nowhere."""
    if deployment.endpoint_id is None:
        return None
    route = session.get(EndpointRoute, (deployment.endpoint_id, deployment.id))
    if route is None:
        return None
    endpoint = session.get(Endpoint, deployment.endpoint_id)
    assert endpoint is not None
    before = weights(session, endpoint)
    session.delete(route)
    session.flush()
    if sum(weights(session, endpoint).values()) != TOTAL_WEIGHT:  # it served: nothing serves now
        for other, _ in routes(session, endpoint):
            other.weight = 0
    return _change(
        session,
        endpoint,
        kind="detach",
        before=before,
        actor=actor,
        reason=reason,
        job_id=None,
        summary={"deployment": deployment.name},
    )


def read(session: Session, endpoint: Endpoint, router_url: str) -> EndpointRead:
    found = routes(session, endpoint)
    active = next((d.name for r, d in found if r.weight == TOTAL_WEIGHT), None)
    return EndpointRead(
        name=endpoint.name,
        description=endpoint.description,
        settings=endpoint.settings,
        url=f"{router_url}/endpoints/{endpoint.name}",
        active=active,
        routes=[
            RouteRead(
                deployment=d.name,
                weight=r.weight,
                state=d.state,
                model_name=d.model_name,
                version=d.version,
                backend=d.backend,
                target=d.target,
            )
            for r, d in found
        ],
        split_salt=endpoint.split_salt,
        traffic_owner=endpoint.traffic_owner,
        created_by=endpoint.created_by,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def update(
    session: Session,
    *,
    actor: Principal | None,
    name: str,
    description: str | None = None,
    settings: Mapping[str, object] | None = None,
    reason: str = "",
) -> Endpoint:
    """Change the description and merge `settings` in (a None value removes its key), audited.

    The router reads the unit settings with the table, so they apply within its staleness
    bound (about a second).
    """
    endpoint = get(session, name, lock=True)
    before = {"description": endpoint.description, "settings": dict(endpoint.settings)}
    if settings:
        check_settings(settings)
        merged = {**endpoint.settings, **settings}
        endpoint.settings = {key: value for key, value in merged.items() if value is not None}
    if description is not None:
        endpoint.description = description
    after = {"description": endpoint.description, "settings": dict(endpoint.settings)}
    if after != before:
        endpoint.updated_at = utcnow()
        audit.record(
            session,
            actor=actor,
            action="endpoint.update",
            target_type="endpoint",
            target_id=endpoint.name,
            summary={"from": before, "to": after, "reason": reason},
        )
    return endpoint


def search(session: Session, *, limit: int, offset: int) -> tuple[list[Endpoint], int]:
    total = session.scalar(select(func.count()).select_from(Endpoint)) or 0
    rows = session.scalars(select(Endpoint).order_by(Endpoint.name).limit(limit).offset(offset))
    return list(rows), total


def history(session: Session, name: str, *, limit: int, offset: int) -> tuple[list[EndpointChange], int]:
    """Newest first."""
    endpoint = get(session, name)
    query = select(EndpointChange).where(EndpointChange.endpoint_id == endpoint.id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(EndpointChange.id.desc()).limit(limit).offset(offset))
    return list(rows), total
