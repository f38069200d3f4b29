"""The Starlette half of the server: health, metadata, `/metrics`, and the answers for paths
and failures the prediction path does not handle.

Nothing here is on the hot path (`predict.py` is). Problems leave with the same body and
request-id rule as the prediction path's (`problems.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atoll._version import __version__
from atoll.deployer.serving.problems import Problem, scope_request_id
from atoll.deployer.serving.state import ModelServer

log = logging.getLogger("atoll.serve")
_TITLES = {404: "Not found", 405: "Method not allowed"}

Handler = Callable[[Request], Response]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def routes(server: ModelServer) -> list[Route]:
    """Every route but the prediction ones (those are `predict.PredictionApp`'s)."""
    metrics = server.metrics

    def timed(route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = handler(request)
            except Problem as exc:
                response = exc.answering(scope_request_id(request.scope)).response()
            metrics.observe(route, response.status_code, time.perf_counter() - started)
            return response

        return answer

    def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    def ready(request: Request) -> Response:
        if server.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": server.reason, "state": server.state}, status_code=503)

    def model_ready(request: Request) -> Response:
        server.check_model(request.path_params["name"], request.path_params.get("version"), None)
        body = {"name": server.name, "ready": server.ready}
        if not server.ready:
            body["reason"] = server.reason
        return JSONResponse(body, status_code=200 if server.ready else 503)

    def model_metadata(request: Request) -> Response:
        server.check_model(request.path_params["name"], request.path_params.get("version"), None)
        return JSONResponse(server.metadata())

    def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "atoll-serve", "version": __version__, "extensions": []})

    def ping(request: Request) -> Response:
        if server.ready:
            return Response("\n", media_type="application/json")
        return JSONResponse({"ready": False, "reason": server.reason}, status_code=503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/v2/health/live", timed("live", live)),
        Route("/v2/health/ready", timed("ready", ready)),
        Route("/v2", timed("metadata", server_metadata)),
        Route("/v2/models/{name}", timed("metadata", model_metadata)),
        Route("/v2/models/{name}/versions/{version}", timed("metadata", model_metadata)),
        Route("/v2/models/{name}/ready", timed("ready", model_ready)),
        Route("/v2/models/{name}/versions/{version}/ready", timed("ready", model_ready)),
        Route("/ping", timed("ping", ping)),
        Route("/health", timed("ping", ping)),
        Route("/metrics", prometheus),
    ]


async def not_found(request: Request, exc: Exception) -> Response:
    """404 and 405 from Starlette's router, as problems."""
    assert isinstance(exc, HTTPException)
    detail = (
        exc.detail
        if exc.status_code != 404
        else f"no route {request.url.path}; this server answers /v2/..., /invocations, /ping and /metrics"
    )
    title = _TITLES.get(exc.status_code, "Error")
    return Problem(exc.status_code, title, str(detail), scope_request_id(request.scope)).response()


async def unexpected(request: Request, exc: Exception) -> Response:
    """A crash: logged with the request id, answered 500 quoting it; never a stack trace."""
    request_id = scope_request_id(request.scope)
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path, "request_id": request_id})
    detail = f"an internal error occurred; quote request id {request_id}"
    return Problem(500, "Internal error", detail, request_id).response()


EXCEPTION_HANDLERS: dict[type[Exception], ErrorHandler] = {HTTPException: not_found, Exception: unexpected}
