"""Per-request context (request id) readable from services without passing it around."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("atoll_request_id", default=None)

_VALID_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def current_request_id() -> str | None:
    return request_id_var.get()


def request_id_from(given: bytes | None) -> str:
    """The caller's `X-Request-ID` when sane (1-64 of `A-Za-z0-9._-`), else a new one.

    Bounded because it is echoed in headers, written to logs and stored in 64-character
    columns: one over-long id must not make an event-log batch fail on PostgreSQL.
    """
    if given and _VALID_ID.fullmatch(given):
        return given.decode("ascii")
    return uuid.uuid4().hex
