"""Domain errors. Services raise these; the web layer turns them into problem+json."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"


def problem_body(
    status: int, title: str, detail: str, request_id: str | None, **extra: Any
) -> dict[str, Any]:
    """The platform's problem+json (RFC 9457) body, for the portal's API and the model server alike."""
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
        "request_id": request_id,
    }


class AtollError(Exception):
    """Base of every error a user can act on. `detail` is shown to the user as is."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(AtollError):
    status = 404
    title = "Not found"


class Conflict(AtollError):
    status = 409
    title = "Conflict"


class InvalidInput(AtollError):
    status = 422
    title = "Invalid input"


class Unauthenticated(AtollError):
    status = 401
    title = "Authentication required"


class Forbidden(AtollError):
    status = 403
    title = "Forbidden"


class PayloadTooLarge(AtollError):
    status = 413
    title = "Payload too large"


class Unavailable(AtollError):
    """A dependency is down or not configured; never for a caller's mistake (that is a 4xx)."""

    status = 503
    title = "Service unavailable"
    retry_after_seconds = 10
