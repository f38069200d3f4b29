"""Event ingestion: outcomes (conversions, revenue...) from the company's services."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from atoll import audit, events
from atoll.abtest.service import check_outcomes
from atoll.auth.policy import Principal, Scope
from atoll.schemas import IsoDateTime
from atoll.web.deps import Authorize, SessionDep
from atoll.web.openapi import errors

router = APIRouter(prefix="/api/v1/events", tags=["events"])
MAX_BATCH = 10_000
Ingester = Annotated[Principal, Depends(Authorize(Scope.ingest))]


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=128, description="Idempotency key")
    unit_id: str = Field(min_length=1, max_length=128, description="User, session or request id")
    metric: str = Field(min_length=1, max_length=128, examples=["purchase"])
    value: float = Field(default=1.0, strict=True)
    ts: IsoDateTime | None = None
    experiment: str | None = Field(default=None, max_length=128)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone, e.g. 2026-11-27T10:00:00Z")
        return value


class OutcomeBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[OutcomeIn] = Field(min_length=1, max_length=MAX_BATCH)


class IngestResult(BaseModel):
    received: int
    inserted: int
    duplicates: int


@router.post("/outcomes", responses=errors(404, 409))
def ingest_outcomes(body: OutcomeBatch, principal: Ingester, session: SessionDep) -> IngestResult:
    """Store outcome events; resending an `event_id` is a no-op, so retries are safe."""
    rows = [e.model_dump(exclude_none=True) for e in body.events]
    check_outcomes(session, rows)  # 404/422 naming an unknown experiment or metric, before any write
    inserted = events.ingest_outcomes(session, rows)
    result = IngestResult(received=len(rows), inserted=inserted, duplicates=len(rows) - inserted)
    if inserted:
        audit.record(
            session,
            actor=principal,
            action="events.ingest_outcomes",
            target_type="event_log",
            target_id="outcome_events",
            summary=result.model_dump(),
        )
    return result
