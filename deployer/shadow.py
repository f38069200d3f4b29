"""Shadow traffic: start and stop mirroring an endpoint's requests to a candidate; the comparison.

A shadow names a candidate deployment behind the endpoint that serves none of its traffic
(weight 0) and the share of requests mirrored to it. The router (routing/shadow.py) reads
active shadows with its endpoint table (so a start or stop reaches it within the table's
refresh period), mirrors after the caller has its answer, and writes one
`ShadowComparison` row per mirrored request. The summary is aggregate SQL over those rows.
One active shadow per endpoint; it never changes weights, so it needs no traffic owner
and runs alongside a canary or an experiment.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.deployer import endpoints, states
from atoll.deployer.models import Endpoint, Shadow, ShadowComparison
from atoll.deployer.traffic_schemas import ShadowRead, ShadowStart, ShadowSummary
from atoll.errors import Conflict, InvalidInput, NotFound

ACTIVE, STOPPED = "active", "stopped"
RECENT = 20


def active(session: Session, endpoint: Endpoint) -> Shadow | None:
    return session.scalar(select(Shadow).where(Shadow.endpoint_id == endpoint.id, Shadow.state == ACTIVE))


def latest(session: Session, name: str) -> Shadow | None:
    endpoint = endpoints.get(session, name)
    return session.scalar(
        select(Shadow).where(Shadow.endpoint_id == endpoint.id).order_by(Shadow.id.desc()).limit(1)
    )


def get_latest(session: Session, name: str) -> Shadow:
    found = latest(session, name)
    if found is None:
        raise NotFound(
            f"endpoint {name!r} has had no shadow; start one with "
            f"`atoll shadow start {name} --to ... --share 0.1`"
        )
    return found


def start(session: Session, *, actor: Principal | None, name: str, body: ShadowStart) -> Shadow:
    endpoint = endpoints.get(session, name, lock=True)
    running = active(session, endpoint)
    if running is not None:
        raise Conflict(
            f"endpoint {name!r} already mirrors {running.share:g} of its requests to {running.candidate}; "
            f"stop it first (atoll shadow stop {name})",
            field="endpoint",
        )
    behind = {d.name: (r, d) for r, d in endpoints.routes(session, endpoint)}
    if body.to not in behind:
        listed = ", ".join(sorted(behind)) or "none"
        raise InvalidInput(
            f"to: deployment {body.to!r} is not behind endpoint {name!r} (its deployments: {listed}); deploy "
            f"it with --endpoint {name} --no-switch first",
            field="to",
        )
    route, deployment = behind[body.to]
    if route.weight > 0:
        raise InvalidInput(
            f"to: {body.to!r} already serves {route.weight} % of endpoint {name!r}; a shadow mirrors to a "
            "deployment that serves none of it",
            field="to",
        )
    if deployment.state != states.AVAILABLE:
        raise Conflict(
            f"to: deployment {body.to!r} is {deployment.state}, not available; start the shadow once its "
            "rollout is done",
            field="to",
        )
    shadow = Shadow(
        endpoint_id=endpoint.id,
        candidate=body.to,
        share=body.share,
        kind=body.kind,
        top_k=body.top_k,
        state=ACTIVE,
        created_by=endpoints.actor_name(actor),
        created_at=utcnow(),
    )
    session.add(shadow)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="shadow.start",
        target_type="endpoint",
        target_id=name,
        summary={"shadow_id": shadow.id, "candidate": body.to, "share": body.share, "kind": body.kind},
    )
    return shadow


def stop(session: Session, *, actor: Principal | None, name: str) -> Shadow:
    endpoint = endpoints.get(session, name, lock=True)
    shadow = active(session, endpoint)
    if shadow is None:
        raise Conflict(f"endpoint {name!r} has no active shadow to stop", field="endpoint")
    shadow.state, shadow.stopped_by, shadow.stopped_at = STOPPED, endpoints.actor_name(actor), utcnow()
    audit.record(
        session,
        actor=actor,
        action="shadow.stop",
        target_type="endpoint",
        target_id=name,
        summary={"shadow_id": shadow.id, "candidate": shadow.candidate},
    )
    session.flush()
    return shadow


def summary(session: Session, shadow: Shadow, endpoint: Endpoint) -> ShadowSummary:
    """Aggregates over the shadow's rows: its endpoint and candidate, since it started."""
    c = ShadowComparison
    where = [c.endpoint == endpoint.name, c.candidate == shadow.candidate, c.ts >= shadow.created_at]
    if shadow.stopped_at is not None:
        where.append(c.ts <= shadow.stopped_at)
    ok = (c.candidate_status >= 200) & (c.candidate_status < 300)
    row = session.execute(
        select(
            func.count(case((ok, 1))),
            func.count(case((~ok, 1))),
            func.avg(c.agreement),
            func.max(c.max_abs_diff),
            func.avg(c.max_abs_diff),
            func.avg(c.rank_overlap),
            func.avg(case((ok, c.primary_latency_ms))),
            func.avg(c.candidate_latency_ms),
        ).where(*where)
    ).one()
    compared, failed, agreement, worst, mean_diff, overlap, primary_ms, candidate_ms = row
    return ShadowSummary(
        compared=int(compared or 0),
        failed=int(failed or 0),
        agreement=_float(agreement),
        max_abs_diff=_float(worst),
        mean_max_abs_diff=_float(mean_diff),
        rank_overlap=_float(overlap),
        primary_latency_ms=_float(primary_ms),
        candidate_latency_ms=_float(candidate_ms),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def read(session: Session, shadow: Shadow, *, recent: int = RECENT) -> ShadowRead:
    endpoint = session.get(Endpoint, shadow.endpoint_id)
    assert endpoint is not None
    c = ShadowComparison
    rows = session.scalars(
        select(c)
        .where(c.endpoint == endpoint.name, c.candidate == shadow.candidate, c.ts >= shadow.created_at)
        .order_by(c.id.desc())
        .limit(recent)
    )
    return ShadowRead(
        id=shadow.id,
        endpoint=endpoint.name,
        candidate=shadow.candidate,
        share=shadow.share,
        kind=shadow.kind,
        top_k=shadow.top_k,
        state=ACTIVE if shadow.state == ACTIVE else STOPPED,
        created_by=shadow.created_by,
        created_at=shadow.created_at,
        stopped_by=shadow.stopped_by,
        stopped_at=shadow.stopped_at,
        summary=summary(session, shadow, endpoint),
        recent=[
            {
                "ts": r.ts.isoformat(),
                "request_id": r.request_id,
                "primary": r.primary_deployment,
                "kind": r.kind,
                "agreement": r.agreement,
                "max_abs_diff": r.max_abs_diff,
                "rank_overlap": r.rank_overlap,
                "primary_latency_ms": r.primary_latency_ms,
                "candidate_latency_ms": r.candidate_latency_ms,
                "candidate_status": r.candidate_status,
                "error": r.error,
            }
            for r in rows
        ],
    )
