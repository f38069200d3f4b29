"""The lifecycle of one model server: loading → ready (or failed) → draining.

`ModelServer` holds everything both halves of the app read: the loaded model and its
batcher, readiness and its reason, metrics and the event log. It knows nothing of HTTP
beyond the `Problem` it raises for a model name or version it does not serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atoll.backends import Catalog, load_catalog
from atoll.deployer.serving.batching import MicroBatcher
from atoll.deployer.serving.loader import load_model
from atoll.deployer.serving.problems import Problem
from atoll.deployer.serving.runtime import LoadedModel, ModelLoadError, load_manifest
from atoll.deployer.serving.telemetry import EventLog, Metrics
from atoll.registry.builds.manifest import BuildManifest

log = logging.getLogger("atoll.serve")
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
    fault_rate: float = 0.0  # a test fault: this share of predictions answers 500 (--fault-rate)
    catalog: Catalog = field(default_factory=load_catalog)  # the default catalog when none is given


def batch_limits(manifest: BuildManifest, config: ServerConfig) -> tuple[int, float]:
    """Flags win; then what the build wrote in its manifest; then the backend's catalog entry."""
    max_batch, max_wait = manifest.max_batch, manifest.max_wait_ms
    unset = {"max_batch", "max_wait_ms"} - manifest.model_fields_set
    if unset:
        entry = config.catalog.backends.get(manifest.backend)
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
        self.metrics.ready = False
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
                load_model,
                self.config.build_dir,
                manifest,
                backend=self.config.catalog.backends.get(manifest.backend),
                threads=self.config.threads,
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
            on_depth=self.metrics.set_queue_depth,
        )
        self.batcher.start()
        self.model = model
        self.events.set_columns(model.signature.columns)
        if self.state == "loading":
            self.state, self.reason = "ready", ""
            self.metrics.ready = True
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
            self.metrics.ready = False
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
            raise Problem(
                404,
                "Not found",
                f"model {name!r} is not served here; this server serves {self.name!r}",
                request_id,
            )
        if version is not None and self.manifest is not None and version != self.version:
            raise Problem(
                404,
                "Not found",
                f"{self.name} version {version} is not served here;"
                f" this server serves version {self.version}",
                request_id,
            )
