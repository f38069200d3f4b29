"""The FastAPI application factory: API routers, the portal, probes and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from atoll._version import __version__
from atoll.backends import cached_catalog
from atoll.db import make_engine, make_session_factory
from atoll.deployer.lifecycle import DeployerContext
from atoll.monitoring.gauges import DriftCollector
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.settings import Settings, get_settings
from atoll.web import openapi, problems
from atoll.web.api import audit as audit_api
from atoll.web.api import auth as auth_api
from atoll.web.api import deployments as deployments_api
from atoll.web.api import endpoints as endpoints_api
from atoll.web.api import events as events_api
from atoll.web.api import experiments as experiments_api
from atoll.web.api import jobs as jobs_api
from atoll.web.api import monitors as monitors_api
from atoll.web.api import registry as registry_api
from atoll.web.api import stats as stats_api
from atoll.web.api import system as system_api
from atoll.web.api import traffic as traffic_api
from atoll.web.http_semantics import HttpSemantics
from atoll.web.middleware import HttpMetrics, RequestContextMiddleware
from atoll.web.portal import deploy_views as portal_deploy_views
from atoll.web.portal import endpoint_views as portal_endpoint_views
from atoll.web.portal import experiment_views as portal_experiment_views
from atoll.web.portal import monitor_views as portal_monitor_views
from atoll.web.portal import registry_views as portal_registry_views
from atoll.web.portal import stats_views as portal_stats_views
from atoll.web.portal import traffic_views as portal_traffic_views
from atoll.web.portal import views as portal_views

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Routes anyone may call without credentials; tests assert that every other route refuses.
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/login",
        "/api/v1/auth/token",
        "/api/v1/webhooks/mlflow",  # authenticated by its HMAC signature instead
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/static",
    }
)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    deployer: DeployerContext | None = None,
) -> FastAPI:
    """The app; `deployer` replaces the deployment targets made from `settings` (tests)."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings.effective_database_url)
    catalog = cached_catalog(settings.backends_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="Atoll",
        version=__version__,
        description="Internal MLOps platform API. Authenticate with `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.catalog = catalog
    app.state.deployer = deployer or DeployerContext.from_settings(settings, catalog)
    app.state.mlflow = MlflowRegistry(settings.mlflow_tracking_uri) if settings.mlflow_tracking_uri else None
    app.state.metrics_registry = registry
    registry.register(DriftCollector(app.state.session_factory))
    app.add_middleware(HttpSemantics, routes=lambda: app.routes, max_body_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=HttpMetrics(registry))  # outermost: ids on all
    problems.install(app)
    app.add_exception_handler(portal_views.LoginRequired, portal_views.login_redirect)
    for module in (
        system_api,
        auth_api,
        audit_api,
        jobs_api,
        events_api,
        registry_api,
        deployments_api,
        endpoints_api,
        traffic_api,
        stats_api,
        portal_registry_views,
        portal_deploy_views,
        portal_endpoint_views,
        portal_traffic_views,
        monitors_api,
        portal_monitor_views,
        experiments_api,
        portal_experiment_views,
        portal_views,
        portal_stats_views,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    openapi.install(app, PUBLIC_PATHS)
    return app
