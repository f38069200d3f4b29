"""Every error leaves as `application/problem+json` (RFC 9457), or as an HTML page in the portal.

No stack trace ever reaches a user: unexpected errors are logged with the request id, and
the response carries only that id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from atoll.context import current_request_id
from atoll.errors import PROBLEM_JSON, AtollError, Unavailable, problem_body
from atoll.web.http_semantics import too_large_detail

log = logging.getLogger(__name__)


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    request_id = request_id or current_request_id()
    body = problem_body(status, title, detail, request_id, **extra)
    all_headers = {"X-Request-ID": request_id} if request_id else {}
    if status == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    all_headers.update(headers or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=all_headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None) or current_request_id()


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "string_pattern_mismatch":  # name the value: the pattern alone is cryptic
        return f"{error['input']!r} does not match the pattern {error['ctx']['pattern']}"
    return str(error["msg"])


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    return [
        {"field": _field_path(tuple(e["loc"])), "in": str(e["loc"][0]), "message": _message(e)}
        for e in exc.errors()
    ]


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def install(app: FastAPI) -> None:
    from atoll.web.portal.render import error_page

    def respond(
        request: Request,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> Response:
        if _wants_html(request):
            return error_page(request, status=status, title=title, detail=detail)
        return problem(status, title, detail, request_id=_request_id(request), headers=headers, **extra)

    def respond_error(request: Request, exc: AtollError) -> Response:
        headers = {}
        if isinstance(exc, Unavailable):
            headers["Retry-After"] = str(exc.retry_after_seconds)
        return respond(request, exc.status, exc.title, exc.detail, headers, **exc.extra)

    @app.exception_handler(AtollError)
    async def _atoll_error(request: Request, exc: AtollError) -> Response:
        return respond_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc)
        first = errors[0]
        detail = f"{first['field'] or first['in']}: {first['message']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
        return respond(request, 422, "Invalid input", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, AtollError):  # raised while FastAPI read the body (e.g. 413)
            return respond_error(request, exc.__cause__)
        titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 413:
            detail = too_large_detail(request.scope)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}; see /docs for the API"
        headers = dict(exc.headers) if exc.headers else None
        return respond(request, exc.status_code, titles.get(exc.status_code, "Error"), detail, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        request_id = _request_id(request)
        log.exception("unhandled error", extra={"path": request.url.path, "request_id": request_id})
        detail = f"an internal error occurred; quote request id {request_id} when reporting it"
        return respond(request, 500, "Internal error", detail)
