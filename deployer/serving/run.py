"""Run the model server under uvicorn, with a graceful drain on SIGTERM.

SIGTERM (or Ctrl+C): readiness turns false at once, the listening socket closes, requests
already received finish (queued batches included), the event writer flushes, and the
process exits 0. A second Ctrl+C forces the exit.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import orjson
import uvicorn

from atoll.deployer.serving.app import create_app
from atoll.deployer.serving.state import ModelServer, ServerConfig

if TYPE_CHECKING:
    from atoll.events import BatchWriter

log = logging.getLogger("atoll.serve")

# The GIL switch interval for a serving process. The ONNX Runtime worker thread needs the GIL
# back for a moment after every call to hand its result over; with CPython's default 5 ms it
# can wait that long behind the event loop's parsing, idling the model. 0.5 ms measured
# p99 2.8 ms against 7.4 ms (one connection, 64-row requests; bench_serve_overhead.py).
SWITCH_INTERVAL_SECONDS = 0.0005


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def make_event_writer(database_url: str) -> BatchWriter:
    """The inference-event writer over the platform database (batched, never blocking).

    Its engine serialises the JSON columns with orjson: the writer thread's CPU per event
    measured 29 against 47 us with the standard library, and every microsecond it holds
    the GIL is taken from the request path.
    """
    from atoll.db import make_engine, make_session_factory
    from atoll.events import BatchWriter, InferenceEvent

    if database_url.startswith("postgresql"):
        engine = make_engine(database_url, connect_args={"connect_timeout": 3}, json_serializer=_json)
    else:
        engine = make_engine(database_url, json_serializer=_json)
    return BatchWriter(make_session_factory(engine), InferenceEvent, max_batch=500, flush_seconds=0.25)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's own handler, do not re-raise the signal after shutdown: a drained
        # server exits 0, which is what a Kubernetes rollout expects.
        self._on_exit()
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def run_server(
    config: ServerConfig,
    *,
    host: str,
    port: int,
    database_url: str,
    drain_seconds: float = 30.0,
) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    server = ModelServer(config, writer_factory=lambda: make_event_writer(database_url))
    uvicorn_config = uvicorn.Config(
        create_app(server),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # nothing here reads the client address; saves a pass over the headers
        server_header=False,
        timeout_graceful_shutdown=int(drain_seconds),
        backlog=2048,
        lifespan="on",
    )
    log.info("serving", extra={"build": str(config.build_dir), "url": f"http://{host}:{port}"})
    _DrainingServer(uvicorn_config, server.begin_drain).run()
