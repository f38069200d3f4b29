"""Domain errors. Services raise these; the web layer turns them into problem+json."""

from __future__ import annotations

from typing import Any


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


class Unavailable(AtollError):
    status = 503
    title = "Service unavailable"
