"""The router's ASGI app: `/endpoints/{name}/{path}` → the chosen deployment's model server.

Bare ASGI (no framework on the request path) with a pooled keep-alive HTTP/1.1 client to
the model servers (`upstream.py`, where the reason is measured). The request body is read
whole and forwarded with the caller's headers (hop-by-hop ones dropped); the answer comes
back with the model server's status, headers and body, plus `X-Atoll-Deployment` naming
who answered. Problems are `application/problem+json`:

- 404: no endpoint of that name;
- 503: the endpoint has no ready deployment with traffic, or its deployment does not
  answer (after one retry: a refused connection means the request never reached a server,
  so the router reloads its table and tries once more, which covers an address that just
  changed);
- 504/502: the model server timed out or broke the connection mid-answer.

`/healthz` (the process answers), `/readyz` (the endpoint table is loaded and fresh) and
`/metrics` (requests, errors and latency per endpoint and deployment) are the router's own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from atoll.context import request_id_from
from atoll.db import make_engine
from atoll.deployer.routing import shadow
from atoll.deployer.routing.choice import EndpointRoutes, Route, choose
from atoll.deployer.routing.shadow import ShadowMirror
from atoll.deployer.routing.table import TableCache, load
from atoll.deployer.routing.upstream import Answer, Broken, Refused, TimedOut, Upstream
from atoll.errors import PROBLEM_JSON, problem_body
from atoll.settings import Settings

log = logging.getLogger("atoll.router")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
TableLoader = Callable[[], dict[str, EndpointRoutes]]

PREFIX = "/endpoints/"
DEPLOYMENT_HEADER = b"x-atoll-deployment"
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("endpoint", "deployment")
        self.requests = Counter(
            "atoll_router_requests", "Requests routed", (*labels, "code"), registry=self.registry
        )
        self.errors = Counter(
            "atoll_router_errors",
            "Requests the router could not route or forward (kind: no_endpoint, no_deployment, connect, "
            "timeout, upstream)",
            (*labels, "kind"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "atoll_router_request_seconds",
            "Time from the request to the last byte of the answer, through the router",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.table_loads = Counter(
            "atoll_router_table_refreshes", "Endpoint table loads", ("outcome",), registry=self.registry
        )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _problem(send: Send, status: int, title: str, detail: str, request_id: str, **extra: Any) -> None:
    body = orjson.dumps(problem_body(status, title, detail, request_id, **extra))
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"x-request-id", request_id.encode())]
    await _answer(send, status, body, headers)


class RouterApp:
    def __init__(
        self,
        loader: TableLoader,
        *,
        refresh_seconds: float = 1.0,
        timeout_seconds: float = 60.0,
        max_connections: int = 512,
        draw: Callable[[], float] = random.random,
        shadow: ShadowMirror | None = None,
    ) -> None:
        self.loader = loader
        self.shadow = shadow  # mirrors a share of requests to a shadow candidate (routing/shadow.py)
        self.cache = TableCache(refresh_seconds=refresh_seconds)
        self.metrics = RouterMetrics()
        self.upstream = Upstream(connect_timeout=2.0, timeout=timeout_seconds, max_idle=max_connections)
        self.draw = draw
        self._refresher: asyncio.Task[None] | None = None

    # -- the endpoint table -----------------------------------------------------------------

    async def refresh(self) -> None:
        try:
            table = await asyncio.to_thread(self.loader)
        except Exception as exc:
            self.cache.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            self.metrics.table_loads.labels("error").inc()
            log.warning("endpoint table not refreshed", extra={"error": self.cache.last_error})
            return
        self.cache.store(table)
        self.metrics.table_loads.labels("ok").inc()
        if self.shadow is not None:
            await self.shadow.refresh()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.cache.refresh_seconds)
            await self.refresh()

    async def startup(self) -> None:
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def shutdown(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self.shadow is not None:
            await self.shadow.close()
        await self.upstream.close()

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        request_id = request_id_from(dict(scope["headers"]).get(b"x-request-id"))
        if path.startswith(PREFIX):
            await self._route(scope, receive, send, request_id)
        elif path == "/healthz":
            await _answer(send, 200, b'{"status":"ok"}', [(b"content-type", b"application/json")])
        elif path == "/readyz":
            await self._ready(send, request_id)
        elif path == "/metrics":
            body = generate_latest(self.metrics.registry)
            await _answer(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])
        else:
            detail = f"no route {path}; call /endpoints/{{name}}/... (e.g. /endpoints/NAME/v2/models/M/infer)"
            await _problem(send, 404, "Not found", detail, request_id)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ready(self, send: Send, request_id: str) -> None:
        if self.cache.fresh_enough():
            body = orjson.dumps(
                {"ready": True, "endpoints": len(self.cache.table), "age_s": self.cache.age()}
            )
            await _answer(send, 200, body, [(b"content-type", b"application/json")])
            return
        why = self.cache.last_error or "the endpoint table has not loaded yet"
        await _problem(
            send, 503, "Not ready", f"the router cannot read the endpoint table: {why}", request_id
        )

    async def _endpoint(self, name: str) -> EndpointRoutes | None:
        found = self.cache.table.get(name)
        if found is None and self.cache.may_force():
            await self.refresh()
            found = self.cache.table.get(name)
        return found

    async def _route(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        name, _, rest = scope["path"][len(PREFIX) :].partition("/")
        endpoint = await self._endpoint(name)
        if endpoint is None:
            self.metrics.errors.labels(name[:63] or "-", "-", "no_endpoint").inc()
            detail = f"no endpoint named {name!r} (list them with `atoll endpoints`)"
            await _problem(send, 404, "Not found", detail, request_id, endpoint=name)
            return
        body = await _read_body(receive)
        draw = self.draw()
        route = choose(endpoint.routes, draw)
        if route is None and self.cache.may_force():  # a deployment may have just become available
            await self.refresh()
            endpoint = self.cache.table.get(name, endpoint)
            route = choose(endpoint.routes, draw)
        failed: set[tuple[str, str | None]] = set()
        response: Answer | None = None
        while route is not None:
            try:
                response = await self._forward(scope, route, rest, body, request_id)
                break
            except Refused:
                # Refused: the request never reached a model server, so trying again is safe.
                self.metrics.errors.labels(name, route.deployment, "connect").inc()
                failed.add((route.deployment, route.address))
                if len(failed) > 1:
                    break
                if self.cache.may_force():
                    await self.refresh()  # the address may have changed, or another deployment took over
                endpoint = self.cache.table.get(name, endpoint)
                remaining = [r for r in endpoint.routes if (r.deployment, r.address) not in failed]
                route = choose(remaining, draw)
            except TimedOut:
                self.metrics.errors.labels(name, route.deployment, "timeout").inc()
                detail = f"deployment {route.deployment} of endpoint {name!r} did not answer in time"
                await _problem(send, 504, "Gateway timeout", detail, request_id, deployment=route.deployment)
                return
            except Broken as exc:
                self.metrics.errors.labels(name, route.deployment, "upstream").inc()
                detail = f"deployment {route.deployment} of endpoint {name!r} broke off: {exc}"
                await _problem(send, 502, "Bad gateway", detail, request_id, deployment=route.deployment)
                return
        if response is None or route is None:
            if failed:
                refused = ", ".join(sorted({d for d, _ in failed}))
                detail = f"endpoint {name!r}: deployment {refused} refused the connection (not running?)"
            else:
                self.metrics.errors.labels(name, "-", "no_deployment").inc()
                detail = f"endpoint {name!r} has no ready deployment with traffic ({endpoint.describe()})"
            await _problem(send, 503, "Service unavailable", detail, request_id, endpoint=name)
            return
        headers = [(key, value) for key, value in response.headers if key not in HOP_BY_HOP]
        headers.append((DEPLOYMENT_HEADER, route.deployment.encode()))
        await _answer(send, response.status, response.body, headers)
        self.metrics.requests.labels(name, route.deployment, str(response.status)).inc()
        self.metrics.latency.labels(name, route.deployment).observe(time.perf_counter() - started)
        if self.shadow is not None:  # after the caller has its answer; never awaited
            elapsed = time.perf_counter() - started
            self.shadow.after(scope, rest, body, request_id, name, route.deployment, response, elapsed)

    async def _forward(self, scope: Scope, route: Route, rest: str, body: bytes, request_id: str) -> Answer:
        assert route.address is not None
        query = scope.get("query_string", b"")
        target = f"/{rest}" + (f"?{query.decode('latin-1')}" if query else "")
        headers = [
            (k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP and k != b"x-request-id"
        ]
        headers.append((b"x-request-id", request_id.encode()))
        return await self.upstream.request(route.address, scope["method"], target, headers, body)


def from_settings(settings: Settings) -> RouterApp:
    """The router over the platform database that `settings` name."""
    engine = make_engine(settings.effective_database_url)
    return RouterApp(
        lambda: load(engine),
        refresh_seconds=settings.router_refresh_seconds,
        shadow=shadow.from_engine(engine),
    )
