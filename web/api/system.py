"""Probes, metrics and the backend catalog."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from atoll.backends import Backend
from atoll.web.deps import BackendName, CatalogDep, Reader
from atoll.web.openapi import errors
from atoll.web.problems import problem

router = APIRouter(tags=["system"])
TEXT = {"type": "string"}


@router.get("/healthz", tags=["public"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _readiness_failures(request: Request) -> list[str]:
    failures = []
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        failures.append(f"database unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    mlflow_uri = request.app.state.settings.mlflow_tracking_uri
    if mlflow_uri:
        try:
            httpx.get(f"{mlflow_uri}/health", timeout=2.0).raise_for_status()
        except httpx.HTTPError as exc:
            failures.append(f"MLflow at {mlflow_uri} unreachable: {type(exc).__name__}")
    return failures


@router.get("/readyz", tags=["public"], response_model=None, responses=errors(503))
def readyz(request: Request) -> dict[str, str] | JSONResponse:
    """Readiness: the database and MLflow (when configured) answer."""
    failures = _readiness_failures(request)
    if failures:
        return problem(503, "Not ready", "; ".join(failures), checks=failures)
    return {"status": "ready"}


@router.get(
    "/metrics",
    tags=["public"],
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics (aggregate counts only; public like kubelet's, for scrapers)."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/backends", tags=["backends"])
def list_backends(principal: Reader, catalog: CatalogDep) -> list[Backend]:
    return list(catalog.backends.values())


@router.get("/api/v1/backends/{name}", tags=["backends"])
def get_backend(name: BackendName, principal: Reader, catalog: CatalogDep) -> Backend:
    return catalog.get(name)
