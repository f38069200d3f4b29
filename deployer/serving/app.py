"""The model server's ASGI app: composition only.

Routes: Open Inference Protocol v2 (`/v2/...`), MLflow scoring (`/invocations`, `/ping`,
`/health`), and `/metrics`. The prediction routes are a bare ASGI app (`predict.py`, the
hot path) in front of a Starlette app for the rest (`control.py`); both read one
`ModelServer` (`state.py`), whose start and stop are the Starlette app's lifespan. Errors
leave as `application/problem+json` (`problems.py`), never a stack trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.types import ASGIApp

from atoll.deployer.serving import control
from atoll.deployer.serving.predict import PredictionApp
from atoll.deployer.serving.state import ModelServer


def create_app(server: ModelServer) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.start()
        yield
        await server.stop()

    rest = Starlette(
        routes=control.routes(server),
        lifespan=lifespan,
        exception_handlers=dict(control.EXCEPTION_HANDLERS),
    )
    return PredictionApp(server, rest)
