from __future__ import annotations

from fastapi import APIRouter

from atoll import audit
from atoll.audit import AuditEventRead
from atoll.schemas import IsoDateTime, Page
from atoll.web.deps import PageDep, Reader, SessionDep

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit")
def list_audit_events(
    principal: Reader,
    session: SessionDep,
    page: PageDep,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: IsoDateTime | None = None,
    until: IsoDateTime | None = None,
) -> Page[AuditEventRead]:
    """Newest first. `action` matches a prefix (`token.` lists every token action)."""
    where = audit.AuditFilter(actor, action, target_type, target_id, since, until)
    rows, total = audit.search(session, where=where, limit=page.limit, offset=page.offset)
    items = [AuditEventRead.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
