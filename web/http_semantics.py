"""HTTP semantics the router leaves out (RFC 9110), as one ASGI middleware:

- `405 Method Not Allowed` carries `Allow` with every method of the path (Starlette lists
  only the first route's when several routes share a path);
- `HEAD` runs the `GET` route and sends its headers without the body;
- `OPTIONS` answers `204` with `Allow`.

- a request body over the limit (`max_request_bytes`; a route raises its own with FastAPI's
  `max_body_size=`, as uploads do) is refused with a 413 problem as soon as `Content-Length`
  says so or the bytes read pass it, never read whole (Starlette's limiter, with its
  plain-text answer made a problem).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY, RequestBodyLimitMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atoll.context import current_request_id
from atoll.errors import PROBLEM_JSON, problem_body


class HttpSemantics:
    def __init__(
        self, app: ASGIApp, *, routes: Callable[[], Sequence[BaseRoute]], max_body_bytes: int
    ) -> None:
        self.app = app
        self.limited = RequestBodyLimitMiddleware(app, max_body_bytes)
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        routes = _routes_for(self.routes(), scope["path"])
        declared = _declared_methods(routes)
        if not declared:  # unknown path: the router's 404
            await self.app(scope, receive, send)
            return
        allowed = declared | {"OPTIONS"} | ({"HEAD"} if "GET" in declared else set())
        if method == "OPTIONS" and "OPTIONS" not in declared:
            await _respond(send, 204, b"", [(b"allow", _allow_header(allowed))])
            return
        if method == "HEAD" and "HEAD" not in declared and "GET" in declared:
            await self.app({**scope, "method": "GET"}, receive, _without_body(send))
            return
        if method not in allowed:
            detail = f"{method} is not allowed on {scope['path']}; allowed: {', '.join(sorted(allowed))}"
            body = problem_body(405, "Method not allowed", detail, current_request_id())
            await _respond(send, 405, orjson.dumps(body), [(b"allow", _allow_header(allowed))], PROBLEM_JSON)
            return
        await self.limited(scope, receive, _problem_for_too_large(scope, send))


def flatten_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """FastAPI >= 0.165 keeps included routers as one entry each; their routes carry full paths
    (Atoll includes routers without an extra prefix)."""
    flat: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        flat.extend(flatten_routes(included.routes) if included is not None else [route])
    return flat


def _routes_for(routes: Sequence[BaseRoute], path: str) -> list[BaseRoute]:
    found: list[BaseRoute] = []
    for route in flatten_routes(routes):
        if isinstance(route, Route):
            matched = route.path_regex.match(path) is not None
        else:
            matched = isinstance(route, Mount) and (path == route.path or path.startswith(route.path + "/"))
        if matched:
            found.append(route)
    return found


def _declared_methods(routes: list[BaseRoute]) -> set[str]:
    declared: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            declared |= {"GET", "HEAD"}
        elif isinstance(route, Route):
            declared |= set(route.methods or ())
    return declared


def _allow_header(allowed: set[str]) -> bytes:
    return ", ".join(sorted(allowed)).encode()


def too_large_detail(scope: Scope) -> str:
    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    detail = "the request body is larger than this route accepts"
    return detail + (f" ({limit:,} bytes)" if isinstance(limit, int) else "")


def _problem_for_too_large(scope: Scope, send: Send) -> Send:
    """Starlette's body limiter answers a declared-too-large body in plain text; make it a problem."""
    replacing = False

    async def wrapped(message: Message) -> None:
        nonlocal replacing
        if message["type"] == "http.response.start" and message["status"] == 413:
            content_type = dict(message.get("headers") or []).get(b"content-type", b"")
            replacing = content_type.startswith(b"text/plain")
            if replacing:
                return
        if replacing and message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            detail = too_large_detail(scope)
            body = orjson.dumps(problem_body(413, "Payload too large", detail, current_request_id()))
            await _respond(send, 413, body, [(b"connection", b"close")], PROBLEM_JSON)
            return
        await send(message)

    return wrapped


def _without_body(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return wrapped


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], media_type: str | None = None
) -> None:
    all_headers = [*headers, (b"content-length", str(len(body)).encode())]
    if media_type:
        all_headers.append((b"content-type", media_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
