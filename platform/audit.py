"""The audit log: one append-only row per mutation, written in the mutation's transaction.

Rows are never updated or deleted: the migration installs triggers that reject both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from atoll.auth.policy import Principal
from atoll.context import current_request_id
from atoll.db import Base, utcnow

SYSTEM_ACTOR = "system"
_REDACTED_KEYS = ("password", "token", "secret")


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    actor_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32), index=True)
    target_id: Mapped[str] = mapped_column(String(255))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64))


def _scrub(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        key: "[redacted]" if any(word in key.lower() for word in _REDACTED_KEYS) else value
        for key, value in summary.items()
    }


def record(
    session: Session,
    *,
    actor: Principal | None,
    action: str,
    target_type: str,
    target_id: str | int,
    summary: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit row to the caller's transaction (it commits or rolls back with it)."""
    event = AuditEvent(
        actor=actor.username if actor else SYSTEM_ACTOR,
        actor_id=actor.user_id if actor else None,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        summary=_scrub(summary or {}),
        request_id=current_request_id(),
    )
    session.add(event)
    return event


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def search(session: Session, *, where: AuditFilter, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
    """Newest first, with the total count for pagination."""

    query = select(AuditEvent)
    if where.actor:
        query = query.where(AuditEvent.actor == where.actor)
    if where.action:
        query = query.where(AuditEvent.action.startswith(where.action))
    if where.target_type:
        query = query.where(AuditEvent.target_type == where.target_type)
    if where.target_id:
        query = query.where(AuditEvent.target_id == where.target_id)
    if where.since:
        query = query.where(AuditEvent.at >= where.since)
    if where.until:
        query = query.where(AuditEvent.at < where.until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    summary: dict[str, Any]
    request_id: str | None
