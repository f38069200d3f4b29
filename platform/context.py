"""Per-request context (request id) readable from services without passing it around."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("atoll_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()
