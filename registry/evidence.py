"""Evidence on a version: what A/B tests, drift monitors, evaluations and approvers found.

abtest and monitoring record evidence here; promotion gates read it. The registry never
imports those packages.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal, Scope
from atoll.errors import Forbidden, InvalidInput
from atoll.registry.models import Evidence
from atoll.registry.schemas import EvidenceIn
from atoll.registry.service import get_version

ALLOWED_STATUS = {
    "ab_verdict": {"won", "non_inferior", "lost", "inconclusive"},
    "drift": {"ok", "alert"},
    "approval": {"approved"},
    "evaluation": {"passed", "failed"},
}


def record(
    session: Session, *, actor: Principal | None, name: str, version: int, body: EvidenceIn
) -> Evidence:
    get_version(session, name, version)
    allowed = ALLOWED_STATUS[body.kind]
    if body.status not in allowed:
        raise InvalidInput(f"status: {body.kind} evidence takes one of {', '.join(sorted(allowed))}")
    if body.kind == "approval":
        if actor is None or not actor.can(Scope.promote):
            raise Forbidden("approvals need the `promote` scope (role approver or above)")
        if not isinstance(body.summary.get("alias"), str):
            raise InvalidInput("summary.alias: an approval names the alias it approves, e.g. production")
    row = Evidence(
        model_name=name,
        version=version,
        kind=body.kind,
        status=body.status,
        summary=body.summary,
        source=body.source,
        recorded_by=actor.username if actor else audit.SYSTEM_ACTOR,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"evidence.{body.kind}",
        target_type="model_version",
        target_id=f"{name}/{version}",
        summary={"status": body.status, "source": body.source},
    )
    return row


def for_version(session: Session, name: str, version: int) -> list[Evidence]:
    """Newest first."""
    return list(
        session.scalars(
            select(Evidence)
            .where(Evidence.model_name == name, Evidence.version == version)
            .order_by(Evidence.id.desc())
        )
    )
