from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from atoll import jobs
from atoll.jobs import JobRead
from atoll.schemas import Page
from atoll.web.deps import PageDep, Reader, SessionDep

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get("/jobs")
def list_jobs(
    principal: Reader,
    session: SessionDep,
    page: PageDep,
    status: Literal["queued", "running", "succeeded", "dead"] | None = None,
    kind: str | None = None,
) -> Page[JobRead]:
    rows, total = jobs.search(session, status=status, kind=kind, limit=page.limit, offset=page.offset)
    items = [JobRead.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
