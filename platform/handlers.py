"""The job handlers every worker runs, gathered from the domain packages."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from atoll.auth import service as auth_service
from atoll.jobs import Handler


def _expire_sessions(session: Session, _payload: dict[str, Any]) -> dict[str, Any]:
    return {"expired": auth_service.expire_sessions(session)}


def job_handlers() -> dict[str, Handler]:
    return {"core.expire_sessions": _expire_sessions}
