"""The model server for one build: an ASGI app (Starlette) over a micro-batched ONNX session.

Routes: Open Inference Protocol v2 (`/v2/...`), MLflow scoring (`/invocations`, `/ping`,
`/health`), and `/metrics`. Errors leave as `application/problem+json` (the platform's
shape: type, title, status, detail, request_id, plus `field` and `expected` for bad input);
never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atoll._version import __version__
from atoll.context import request_id_var
from atoll.deployer.server.batching import BatcherClosed, MicroBatcher
from atoll.deployer.server.model import LoadedModel, ModelLoadError, load_manifest, load_model
from atoll.deployer.server.payloads import InputError, parse_mlflow, parse_oip
from atoll.deployer.server.telemetry import EventLog, Metrics
from atoll.registry.build_manifest import BuildManifest

log = logging.getLogger("atoll.serve")
PROBLEM_JSON = "application/problem+json"
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

WriterFactory = Callable[[], Any]  # returns an atoll.events.BatchWriter (or raises)


@dataclass(frozen=True)
class ServerConfig:
    build_dir: Path
    endpoint: str | None = None
    deployment: str | None = None
    max_batch: int | None = None  # None: the manifest's, or the backend catalog's
    max_wait_ms: float | None = None
    max_rows: int = DEFAULT_MAX_ROWS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    threads: int | None = None
    backends_file: Path | None = None


def problem(status: int, title: str, detail: str, request_id: str | None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update(extra)
    body["request_id"] = request_id
    headers = {"X-Request-ID": request_id} if request_id else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class _Reject(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def batch_limits(manifest: BuildManifest, config: ServerConfig) -> tuple[int, float]:
    """Flags win; then what the build wrote in its manifest; then the backend's catalog entry."""
    max_batch, max_wait = manifest.max_batch, manifest.max_wait_ms
    unset = {"max_batch", "max_wait_ms"} - manifest.model_fields_set
    if unset:
        try:
            from atoll.backends import cached_catalog

            entry = cached_catalog(config.backends_file).backends.get(manifest.backend)
        except Exception as exc:
            log.warning("backend catalog unreadable; using the manifest", extra={"error": str(exc)})
            entry = None
        if entry is not None:
            max_batch = entry.max_batch if "max_batch" in unset else max_batch
            max_wait = entry.max_wait_ms if "max_wait_ms" in unset else max_wait
    return config.max_batch or max_batch, max_wait if config.max_wait_ms is None else config.max_wait_ms


class ModelServer:
    """State of one server: loading → ready (or failed) → draining."""

    def __init__(self, config: ServerConfig, writer_factory: WriterFactory | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.state = "loading"
        self.reason = "the model is loading"
        self.model: LoadedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.manifest: BuildManifest | None = None
        self._writer_factory = writer_factory
        self._load_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        try:
            self.manifest = load_manifest(config.build_dir)
        except ModelLoadError as exc:
            self._fail(str(exc))
        m = self.manifest
        self.name = m.model_name if m else config.build_dir.name
        self.version = str(m.version) if m else "unknown"
        self.events = EventLog(
            None,
            endpoint=config.endpoint or self.name,
            deployment=config.deployment,
            model_name=self.name,
            model_version=self.version,
            backend=m.backend if m else "unknown",
            columns=m.input_columns if m else None,
        )
        self.metrics.watch_event_log(self.events)

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def _fail(self, reason: str) -> None:
        self.state, self.reason = "failed", reason
        self.metrics.ready.set(0)
        log.error("model not served", extra={"reason": reason, "build": str(self.config.build_dir)})

    async def start(self) -> None:
        if self._writer_factory is not None:
            try:
                self.events.writer = self._writer_factory()
            except Exception as exc:
                log.error("event log unavailable; inference events are dropped", extra={"error": str(exc)})
        loop = asyncio.get_running_loop()
        self._flush_task = loop.create_task(self._flush_events())
        if self.manifest is not None:
            self._load_task = loop.create_task(self._load(self.manifest))

    async def _flush_events(self) -> None:
        while True:
            await asyncio.sleep(self.events.FLUSH_SECONDS)
            self.events.flush()

    async def _load(self, manifest: BuildManifest) -> None:
        started = time.perf_counter()
        try:
            model = await asyncio.to_thread(
                load_model, self.config.build_dir, manifest, threads=self.config.threads
            )
        except ModelLoadError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:  # an unexpected loader failure is still a reason, not a crash
            log.exception("model load crashed")
            self._fail(f"the model could not be loaded: {type(exc).__name__}")
            return
        max_batch, max_wait = batch_limits(manifest, self.config)
        self.batcher = MicroBatcher(
            model.run,
            max_batch=max_batch,
            max_wait_ms=max_wait,
            on_batch=self.metrics.on_batch,
            on_depth=self.metrics.queue_depth.set,
        )
        self.batcher.start()
        self.model = model
        self.events.set_columns(model.signature.columns)
        if self.state == "loading":
            self.state, self.reason = "ready", ""
            self.metrics.ready.set(1)
        log_method = log.warning if model.provider_note else log.info
        log_method(
            "model ready",
            extra={
                "model": self.name,
                "version": self.version,
                "backend": manifest.backend,
                "runtime_provider": model.provider,
                "requested_provider": manifest.runtime_provider,
                "provider_fallback": model.provider_note,
                "intra_op_threads": model.threads,
                "max_batch": max_batch,
                "max_wait_ms": max_wait,
                "load_seconds": round(time.perf_counter() - started, 3),
            },
        )

    def begin_drain(self) -> None:
        """Readiness goes false at once (SIGTERM); in-flight and queued requests still finish."""
        if self.state != "draining":
            self.state, self.reason = "draining", "the server is shutting down"
            self.metrics.ready.set(0)
            log.info("draining: readiness is false, finishing queued requests")

    async def stop(self) -> None:
        self.begin_drain()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            await self.batcher.drain()
        if self._flush_task is not None:
            self._flush_task.cancel()
        await asyncio.to_thread(self.events.close)
        writer = self.events.writer
        log.info(
            "stopped",
            extra={
                "events_written": writer.written if writer else 0,
                "events_dropped": (writer.dropped if writer else 0) + self.events.dropped_here,
            },
        )

    # --- descriptions ---------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        model, manifest = self.model, self.manifest
        platform = (
            model.platform
            if model
            else ("mlflow_pyfunc" if manifest and manifest.format == "pyfunc" else "onnxruntime")
        )
        body: dict[str, Any] = {"name": self.name, "versions": [self.version], "platform": platform}
        if model is None:
            body.update(inputs=[], outputs=[], parameters={"ready": False, "reason": self.reason})
            return body
        sig = model.signature
        assert manifest is not None
        body["inputs"] = [{"name": sig.input_name, "datatype": sig.datatype, "shape": [-1, sig.n_features]}]
        body["outputs"] = [o.describe() for o in model.outputs]
        body["parameters"] = {
            "backend": manifest.backend,
            "precision": manifest.precision,
            "emulated": manifest.emulated,
            "runtime_provider": model.provider,
            "requested_provider": manifest.runtime_provider,
            "provider_fallback": model.provider_note,
            "intra_op_threads": model.threads,
            "input_columns": sig.columns,
            "label_output": model.label_output,
            "classes": manifest.classes,
            "model_uri": manifest.model_uri,
            "max_batch": self.batcher.max_batch if self.batcher else None,
            "max_wait_ms": self.batcher.max_wait * 1000 if self.batcher else None,
            "endpoint": self.events._base["endpoint"],
            "deployment": self.config.deployment,
        }
        return body

    def check_model(self, name: str, version: str | None, request_id: str | None) -> None:
        if self.manifest is not None and name != self.name:
            raise _Reject(
                problem(
                    404,
                    "Not found",
                    f"model {name!r} is not served here; this server serves {self.name!r}",
                    request_id,
                )
            )
        if version is not None and self.manifest is not None and version != self.version:
            raise _Reject(
                problem(
                    404,
                    "Not found",
                    f"{self.name} version {version} is not served here; "
                    f"this server serves version {self.version}",
                    request_id,
                )
            )


# --- the app ------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = declared is not None and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = True
            if size > 4 * limit:  # stop reading an abusive body; the connection closes
                break
            continue
        chunks.append(chunk)
    if too_large:
        raise InputError(
            "body", f"the body is larger than {limit} bytes; send fewer rows per request", status=413
        )
    return b"".join(chunks)


def create_app(server: ModelServer) -> Starlette:
    config, metrics = server.config, server.metrics

    def _rows_response(
        route: str,
        parse: Callable[[Any, Any, int, bytes | None], npt.NDArray[Any]],
        render: Callable[[LoadedModel, dict[str, npt.NDArray[Any]], dict[str, Any], str], dict[str, Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            started = time.perf_counter()
            request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
            request_id_var.set(request_id)
            metrics.in_flight.inc()
            status = 500
            rows: npt.NDArray[Any] | None = None
            outputs: dict[str, npt.NDArray[Any]] | None = None
            model = server.model
            try:
                params = request.path_params
                if "name" in params:
                    server.check_model(params["name"], params.get("version"), request_id)
                batcher = server.batcher
                if not server.ready or model is None or batcher is None:
                    title = "Model not ready" if server.state != "draining" else "Shutting down"
                    raise _Reject(problem(503, title, server.reason, request_id))
                with batcher.announce():
                    body = await _read_body(request, config.max_body_bytes)
                    header_length = request.headers.get("inference-header-content-length")
                    binary: bytes | None = None
                    try:
                        if header_length is not None and route == "infer":  # OIP binary tensor data
                            split = int(header_length)
                            if not 0 < split <= len(body):
                                raise ValueError("header length out of range")
                            payload = orjson.loads(body[:split])
                            binary = body[split:]
                        else:
                            payload = orjson.loads(body)
                    except ValueError:
                        raise _Reject(
                            problem(400, "Invalid JSON", "the body is not valid JSON", request_id)
                        ) from None
                    rows = parse(payload, model.signature, config.max_rows, binary)
                    model.check_rows(rows)
                # out of `announce()`: the batcher waits for announced requests, not this one
                try:
                    outputs = await batcher.submit(rows)
                except BatcherClosed as exc:
                    raise _Reject(problem(503, "Shutting down", str(exc), request_id)) from None
                content = render(model, outputs, payload, request_id)
                status = 200
                return Response(
                    orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json",
                    headers={"X-Request-ID": request_id},
                )
            except InputError as exc:
                status = exc.status
                title = "Payload too large" if status == 413 else "Invalid input"
                expected = model.signature.as_dict() if model is not None else None
                metrics.errors.labels(route, "input").inc()
                return problem(status, title, str(exc), request_id, field=exc.field, expected=expected)
            except _Reject as exc:
                status = exc.response.status_code
                metrics.errors.labels(route, "rejected").inc()
                return exc.response
            except Exception:
                log.exception("prediction failed", extra={"route": route})
                metrics.errors.labels(route, "internal").inc()
                detail = f"the prediction failed; quote request id {request_id} when reporting it"
                return problem(500, "Internal error", detail, request_id)
            finally:
                seconds = time.perf_counter() - started
                metrics.in_flight.dec()
                metrics.observe(route, status, seconds)
                server.events.record(
                    request_id=request_id,
                    status=status,
                    latency_ms=seconds * 1000.0,
                    rows=rows if status == 200 else None,
                    outputs=outputs,
                    label_output=model.label_output if model else None,
                    proba_output=model.manifest.proba_output if model else None,
                )

        return handler

    def render_oip(
        model: LoadedModel, outputs: dict[str, npt.NDArray[Any]], payload: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        wanted = payload.get("outputs")
        names = list(outputs)
        if isinstance(wanted, list) and wanted:
            names = []
            for i, item in enumerate(wanted):
                name = item.get("name") if isinstance(item, dict) else None
                if name not in outputs:
                    known = ", ".join(outputs)
                    raise InputError(f"outputs[{i}].name", f"unknown output {name!r}; outputs are {known}")
                names.append(name)
        specs = {o.name: o for o in model.outputs}
        return {
            "model_name": server.name,
            "model_version": server.version,
            "id": str(payload.get("id", request_id)),
            "outputs": [
                {
                    "name": name,
                    "datatype": specs[name].datatype,
                    "shape": list(outputs[name].shape),
                    "data": outputs[name].reshape(-1).tolist(),
                }
                for name in names
            ],
        }

    def render_mlflow(
        model: LoadedModel, outputs: dict[str, npt.NDArray[Any]], payload: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        labels = outputs[model.label_output]
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.reshape(-1)
        return {"predictions": labels.tolist()}

    infer = _rows_response("infer", parse_oip, render_oip)
    invocations = _rows_response("invocations", parse_mlflow, render_mlflow)

    def _timed(
        route: str, handler: Callable[[Request], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def timed(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = handler(request)
            except _Reject as exc:
                response = exc.response
            metrics.observe(route, response.status_code, time.perf_counter() - started)
            return response

        return timed

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

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "Not found", 405: "Method not allowed"}
        detail = (
            exc.detail
            if exc.status_code != 404
            else (
                f"no route {request.url.path}; this server answers /v2/..., /invocations, /ping and /metrics"
            )
        )
        return problem(exc.status_code, titles.get(exc.status_code, "Error"), str(detail), None)

    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = uuid.uuid4().hex
        log.error("unhandled error", exc_info=exc, extra={"path": request.url.path, "request_id": request_id})
        return problem(
            500, "Internal error", f"an internal error occurred; quote request id {request_id}", request_id
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        yield
        await server.stop()

    routes = [  # prediction routes first: Starlette tries routes in order on every request
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/v2/health/live", _timed("live", live)),
        Route("/v2/health/ready", _timed("ready", ready)),
        Route("/v2", _timed("metadata", server_metadata)),
        Route("/v2/models/{name}", _timed("metadata", model_metadata)),
        Route("/v2/models/{name}/versions/{version}", _timed("metadata", model_metadata)),
        Route("/v2/models/{name}/ready", _timed("ready", model_ready)),
        Route("/v2/models/{name}/versions/{version}/ready", _timed("ready", model_ready)),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/ping", _timed("ping", ping)),
        Route("/health", _timed("ping", ping)),
        Route("/metrics", prometheus),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found, Exception: unexpected},
    )
