"""The prediction routes, as a bare ASGI app in front of the Starlette one.

`/v2/models/{name}[/versions/{version}]/infer` and `/invocations` are the hot path: every
microsecond the event-loop thread spends on a request is one it cannot spend parsing the
next (bench/bench_serve_overhead.py). Starlette's middleware stack, router, Request and
Response cost about 20 us per request (measured warm, in-process); here a path is matched by
slicing it, the three headers used are read once from the ASGI scope, and the answer is
two ASGI messages. The answer is sent before the request is counted and logged, so neither
delays it. Every other path goes to the Starlette app (health, metadata, /metrics, 404s).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atoll.context import request_id_from, request_id_var
from atoll.deployer.serving.batching import BatcherClosed
from atoll.deployer.serving.contract import InputError, Signature
from atoll.deployer.serving.oip import parse_oip, render_oip
from atoll.deployer.serving.problems import Problem
from atoll.deployer.serving.runtime import LoadedModel
from atoll.deployer.serving.scoring import parse_mlflow, render_mlflow
from atoll.deployer.serving.state import ModelServer
from atoll.errors import PROBLEM_JSON
from atoll.events import UNIT_HEADER

log = logging.getLogger("atoll.serve")

Parse = Callable[[Any, Signature, int, "bytes | None"], npt.NDArray[Any]]
Outputs = dict[str, npt.NDArray[Any]]
_JSON = b"application/json"
_OIP_PREFIX, _OIP_SUFFIX = "/v2/models/", "/infer"
_WANTED_HEADERS = frozenset(
    {b"content-length", b"x-request-id", b"inference-header-content-length", UNIT_HEADER}
)
MAX_UNIT_CHARS = 128  # the inference log's unit_id column
_CLIENT_GONE = 499  # nginx's "client closed request": logged, never sent


@dataclass(frozen=True)
class PredictionRoute:
    route: str  # "infer" or "invocations": the metrics label
    model: str | None = None
    version: str | None = None


def match_route(path: str) -> PredictionRoute | None:
    """The prediction route `path` names, or None for every other path."""
    if path == "/invocations":
        return PredictionRoute("invocations")
    if not (path.startswith(_OIP_PREFIX) and path.endswith(_OIP_SUFFIX)):
        return None
    parts = path[len(_OIP_PREFIX) : -len(_OIP_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return PredictionRoute("infer", parts[0])
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return PredictionRoute("infer", parts[0], parts[2])
    return None


class _ClientGone(Exception):
    pass


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    rows: npt.NDArray[Any] | None = None
    outputs: Outputs | None = None


Render = Callable[[str, str, LoadedModel, Outputs, Any, str], bytes]
_ROUTES: dict[str, tuple[Parse, Render]] = {
    "infer": (parse_oip, render_oip),
    "invocations": (parse_mlflow, render_mlflow),
}


async def read_body(receive: Receive, declared: int | None, limit: int) -> bytes:
    """The whole body; 413 past `limit` (declared or read), without buffering a huge one."""
    too_large = declared is not None and declared > limit
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            too_large = True
        elif chunk:
            chunks.append(chunk)
        if not message.get("more_body", False) or size > 4 * limit:  # stop reading an abusive body
            break
    if too_large:
        raise InputError(
            "body", f"the body is larger than {limit} bytes; send fewer rows per request", status=413
        )
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode(body: bytes, header_length: bytes | None) -> tuple[Any, bytes | None]:
    """The JSON payload, and the binary tensor data after it (OIP binary extension)."""
    try:
        if header_length is None:
            return orjson.loads(body), None
        split = int(header_length)
        if not 0 < split <= len(body):
            raise ValueError("header length out of range")
        return orjson.loads(body[:split]), body[split:]
    except ValueError:
        raise Problem(400, "Invalid JSON", "the body is not valid JSON") from None


class PredictionApp:
    """Answers the prediction routes itself and hands every other request to `fallback`."""

    def __init__(self, server: ModelServer, fallback: ASGIApp) -> None:
        self.server = server
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = match_route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.fallback(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k: v for k, v in scope["headers"] if k in _WANTED_HEADERS}
        request_id = request_id_from(headers.get(b"x-request-id"))
        request_id_var.set(request_id)
        metrics = self.server.metrics
        metrics.in_flight += 1
        answer = _Answer(_CLIENT_GONE, b"")
        try:
            answer = await self._answer(route, scope, headers, receive, request_id)
            if answer.status != _CLIENT_GONE:
                await send(_start(answer, request_id))
                await send({"type": "http.response.body", "body": answer.body})
        finally:
            metrics.in_flight -= 1
            self._log(route, answer, request_id, time.perf_counter() - started, headers.get(UNIT_HEADER))

    def _log(
        self, route: PredictionRoute, answer: _Answer, request_id: str, seconds: float, unit: bytes | None
    ) -> None:
        self.server.metrics.observe(route.route, answer.status, seconds)
        model = self.server.model
        self.server.events.record(
            request_id=request_id,
            unit_id=_unit_id(unit),
            status=answer.status,
            latency_ms=seconds * 1000.0,
            rows=answer.rows,
            outputs=answer.outputs,
            label_output=model.label_output if model else None,
            proba_output=model.manifest.proba_output if model else None,
        )

    async def _answer(
        self,
        route: PredictionRoute,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        request_id: str,
    ) -> _Answer:
        server, metrics = self.server, self.server.metrics
        model = server.model
        try:
            if scope["method"] != "POST":
                raise Problem(
                    405, "Method not allowed", f"{scope['path']} takes POST", headers={"Allow": "POST"}
                )
            if route.model is not None:
                server.check_model(route.model, route.version, request_id)
            batcher = server.batcher
            if not server.ready or model is None or batcher is None:
                raise Problem(
                    503, "Model not ready" if server.state != "draining" else "Shutting down", server.reason
                )
            parse, render = _ROUTES[route.route]
            with batcher.announce():
                declared = headers.get(b"content-length")
                limit = server.config.max_body_bytes
                body = await read_body(
                    receive, int(declared) if declared and declared.isdigit() else None, limit
                )
                binary_split = (
                    headers.get(b"inference-header-content-length") if route.route == "infer" else None
                )
                payload, binary = decode(body, binary_split)
                rows = parse(payload, model.signature, server.config.max_rows, binary)
                model.check_rows(rows)
            if server.config.fault_rate and random.random() < server.config.fault_rate:
                metrics.error(route.route, "injected")
                rate = server.config.fault_rate
                detail = f"an injected test fault (--fault-rate {rate:g}); quote {request_id}"
                return _problem_answer(Problem(500, "Injected fault", detail), request_id)
            try:  # out of `announce()`: the batcher waits for announced requests, not this one
                outputs = await batcher.submit(rows)
            except BatcherClosed as exc:
                raise Problem(503, "Shutting down", str(exc)) from None
            content = render(server.name, server.version, model, outputs, payload, request_id)
            return _Answer(200, content, rows=rows, outputs=outputs)
        except InputError as exc:
            metrics.error(route.route, "input")
            title = "Payload too large" if exc.status == 413 else "Invalid input"
            expected = model.signature.as_dict() if model is not None else None
            problem = Problem(exc.status, title, str(exc), request_id, field=exc.field, expected=expected)
            return _problem_answer(problem, request_id)
        except Problem as exc:
            metrics.error(route.route, "rejected")
            return _problem_answer(exc, request_id)
        except _ClientGone:
            metrics.error(route.route, "client_gone")
            return _Answer(_CLIENT_GONE, b"")
        except Exception:
            log.exception("prediction failed", extra={"route": route.route})
            metrics.error(route.route, "internal")
            detail = f"the prediction failed; quote request id {request_id} when reporting it"
            return _problem_answer(Problem(500, "Internal error", detail), request_id)


def _unit_id(header: bytes | None) -> str | None:
    """The logged unit id from `X-Atoll-Unit` (cut to the column's 128 characters)."""
    if not header:
        return None
    return header.decode("utf-8", "replace").strip()[:MAX_UNIT_CHARS] or None


def _problem_answer(problem: Problem, request_id: str) -> _Answer:
    problem.request_id = request_id
    extra = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in problem.headers.items())
    return _Answer(problem.status, problem.body(), PROBLEM_JSON.encode(), extra)


def _start(answer: _Answer, request_id: str) -> Message:
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
    ]
    headers.extend(h for h in answer.headers if h[0] != b"x-request-id")
    return {"type": "http.response.start", "status": answer.status, "headers": headers}
