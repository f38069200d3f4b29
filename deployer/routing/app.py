"""The router's ASGI app: `/endpoints/{name}/{path}` → the chosen deployment's model server.

Bare ASGI (no framework on the request path) with a pooled keep-alive HTTP/1.1 client to
the model servers (`upstream.py`, where the reason is measured). The request body is read
whole and forwarded with the caller's headers (hop-by-hop ones dropped); the answer comes
back with the model server's status, headers and body, plus `X-Atoll-Deployment` naming
who answered.

Which deployment: with a unit key (`units.py`: a header or a body field the endpoint's
settings name) the sticky assignment of (split salt, unit) (`choice.choose_for_unit`),
else a uniform draw per request over the weights. The first request of a unit under a
split writes an exposure record, off the request path (`exposures.py`).

A deployment that is gone: when the connection is refused the request never reached a
server, so the router reloads its table and tries once more on the split's other routes
(or the same deployment at a new address); when the connection breaks mid-request it does
the same only for idempotent calls (`units.is_idempotent`: GET and friends, and POST to
the model server's prediction paths). Either way at most one retry, counted in
`atoll_router_retries_total`; if none is possible or it fails too, 503.

Problems are `application/problem+json`:

- 400: a unit key over 128 characters;
- 404: no endpoint of that name;
- 503: the endpoint has no ready deployment with traffic, or its deployments are gone
  (refused, or broke off a call that is not retried);
- 504: the model server timed out (not retried: it may still be working on it).

`/healthz` (the process answers), `/readyz` (the endpoint table is loaded and fresh) and
`/metrics` (requests, errors and latency per endpoint and deployment, retries, exposures
written and dropped) are the router's own.
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
from atoll.deployer.assignment import unit_key
from atoll.deployer.routing import shadow
from atoll.deployer.routing.choice import EndpointRoutes, Route, choose, choose_for_unit
from atoll.deployer.routing.exposures import ExposureCollector, ExposureLog
from atoll.deployer.routing.shadow import ShadowMirror
from atoll.deployer.routing.table import TableCache, load
from atoll.deployer.routing.units import UnitTooLong, is_idempotent, unit_of
from atoll.deployer.routing.upstream import Answer, Broken, Refused, TimedOut, Upstream
from atoll.errors import PROBLEM_JSON, problem_body
from atoll.events import UNIT_HEADER
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
            "Requests the router could not route or forward, and failed attempts (kind: no_endpoint, "
            "no_deployment, bad_unit, connect, upstream (broke off), timeout, unavailable (its "
            "deployments were gone: answered 503))",
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
        self.retries = Counter(
            "atoll_router_retries",
            "Requests sent once more after their deployment was gone (deployment: the one that was gone)",
            (*labels, "outcome"),
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
        exposures: ExposureLog | None = None,
        shadow: ShadowMirror | None = None,
    ) -> None:
        self.loader = loader
        self.shadow = shadow  # mirrors a share of requests to a shadow candidate (routing/shadow.py)
        self.cache = TableCache(refresh_seconds=refresh_seconds)
        self.metrics = RouterMetrics()
        self.exposures = exposures or ExposureLog(None)
        self.metrics.registry.register(ExposureCollector(self.exposures))
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
        await asyncio.to_thread(self.exposures.close)

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
        try:
            unit = unit_of(scope["headers"], body, header=endpoint.unit_header, field=endpoint.unit_field)
        except UnitTooLong as exc:
            self.metrics.errors.labels(name, "-", "bad_unit").inc()
            detail = f"{exc}: send a shorter id (a user or session id) in {endpoint.unit_header.decode()}"
            await _problem(send, 400, "Bad request", detail, request_id, endpoint=name)
            return
        key = None if unit is None else unit_key(endpoint.salt, unit)
        draw = self.draw()

        def pick(routes: tuple[Route, ...] | list[Route]) -> Route | None:
            return choose(routes, draw) if key is None else choose_for_unit(routes, key)

        route = pick(endpoint.routes)
        if route is None and self.cache.may_force():  # a deployment may have just become available
            await self.refresh()
            endpoint = self.cache.table.get(name, endpoint)
            route = pick(endpoint.routes)
        retry_safe = is_idempotent(scope["method"], f"/{rest}")
        gone: list[tuple[Route, str]] = []  # (route, why) of each attempt that found no server
        response: Answer | None = None
        while route is not None:
            try:
                response = await self._forward(scope, route, rest, body, request_id, unit)
                break
            except Refused as exc:  # never reached a server: another try is safe for any call
                self.metrics.errors.labels(name, route.deployment, "connect").inc()
                gone.append((route, f"{route.deployment} refused the connection ({exc})"))
            except Broken as exc:
                self.metrics.errors.labels(name, route.deployment, "upstream").inc()
                gone.append((route, f"{route.deployment} broke off the call ({exc})"))
                if not retry_safe:
                    break
            except TimedOut:
                self.metrics.errors.labels(name, route.deployment, "timeout").inc()
                detail = f"deployment {route.deployment} of endpoint {name!r} did not answer in time"
                await _problem(send, 504, "Gateway timeout", detail, request_id, deployment=route.deployment)
                return
            if len(gone) > 1:
                self.metrics.retries.labels(name, gone[0][0].deployment, "failed").inc()
                break
            route = await self._retry_route(name, endpoint, gone[0][0], pick)
            if route is None:
                self.metrics.retries.labels(name, gone[0][0].deployment, "no_other").inc()
        if response is None or route is None:
            await self._unavailable(send, name, endpoint, gone, retry_safe, scope["method"], rest, request_id)
            return
        if gone:
            self.metrics.retries.labels(name, gone[0][0].deployment, "served").inc()
        headers = [(key_, value) for key_, value in response.headers if key_ not in HOP_BY_HOP]
        headers.append((DEPLOYMENT_HEADER, route.deployment.encode()))
        await _answer(send, response.status, response.body, headers)
        if unit is not None and not gone:  # served where its assignment sends it
            self.exposures.record(endpoint=name, split=endpoint.salt, deployment=route.deployment, unit=unit)
        self.metrics.requests.labels(name, route.deployment, str(response.status)).inc()
        self.metrics.latency.labels(name, route.deployment).observe(time.perf_counter() - started)
        if self.shadow is not None:  # after the caller has its answer; never awaited
            elapsed = time.perf_counter() - started
            self.shadow.after(scope, rest, body, request_id, name, route.deployment, response, elapsed)

    async def _retry_route(
        self,
        name: str,
        endpoint: EndpointRoutes,
        failed: Route,
        pick: Callable[[tuple[Route, ...] | list[Route]], Route | None],
    ) -> Route | None:
        """Where the one retry goes: the split without the failed (deployment, address)."""
        if self.cache.may_force():
            await self.refresh()  # the address may have changed, or the split
        current = self.cache.table.get(name, endpoint)
        left = [r for r in current.routes if (r.deployment, r.address) != (failed.deployment, failed.address)]
        return pick(left)

    async def _unavailable(
        self,
        send: Send,
        name: str,
        endpoint: EndpointRoutes,
        gone: list[tuple[Route, str]],
        retry_safe: bool,
        method: str,
        rest: str,
        request_id: str,
    ) -> None:
        if not gone:
            self.metrics.errors.labels(name, "-", "no_deployment").inc()
            detail = f"endpoint {name!r} has no ready deployment with traffic ({endpoint.describe()})"
        else:
            self.metrics.errors.labels(name, gone[0][0].deployment, "unavailable").inc()
            detail = f"endpoint {name!r}: " + "; then ".join(why for _, why in gone)
            if len(gone) == 1 and not retry_safe:
                detail += f"; not retried: {method} /{rest} may have reached it and is not idempotent"
            elif len(gone) == 1:
                detail += "; no other ready deployment with traffic to retry on"
        tried = [r.deployment for r, _ in gone]
        await _problem(send, 503, "Service unavailable", detail, request_id, endpoint=name, tried=tried)

    async def _forward(
        self, scope: Scope, route: Route, rest: str, body: bytes, request_id: str, unit: str | None
    ) -> Answer:
        """The request to `route`, with the request id and the unit key the split used
        (`X-Atoll-Unit`, whichever header or body field it came from: the model server logs it
        on the inference row, where outcome events find their predictions)."""
        assert route.address is not None
        query = scope.get("query_string", b"")
        target = f"/{rest}" + (f"?{query.decode('latin-1')}" if query else "")
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k.lower() not in HOP_BY_HOP and k not in (b"x-request-id", UNIT_HEADER)
        ]
        headers.append((b"x-request-id", request_id.encode()))
        if unit is not None and unit.isprintable():  # a control character cannot travel in a header
            headers.append((UNIT_HEADER, unit.encode()))
        return await self.upstream.request(route.address, scope["method"], target, headers, body)


def from_settings(settings: Settings) -> RouterApp:
    """The router over the platform database that `settings` name."""
    engine = make_engine(settings.effective_database_url)
    return RouterApp(
        lambda: load(engine),
        refresh_seconds=settings.router_refresh_seconds,
        exposures=ExposureLog.for_engine(engine),
        shadow=shadow.from_engine(engine),
    )
