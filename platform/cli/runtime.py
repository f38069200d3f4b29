"""Wiring for the processes the CLI starts: which job handlers and schedules a worker runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from atoll.auth import service as auth_service
from atoll.jobs import Handler
from atoll.settings import Settings

if TYPE_CHECKING:
    from atoll.deployer.lifecycle import DeployerContext

SYNC_JOB = "registry.sync"
EXPIRE_SESSIONS_JOB = "core.expire_sessions"
ROLLOUT_JOB = "deployer.rollout"  # atoll.deployer.lifecycle.ROLLOUT_JOB (imported lazily below)
RECONCILE_JOB = "deployer.reconcile"


def deployer_context(settings: Settings) -> DeployerContext:
    """The deployer's view of the platform: settings, the backend catalog, the targets."""
    from atoll.backends import cached_catalog
    from atoll.deployer.lifecycle import DeployerContext
    from atoll.deployer.targets.select import Targets

    return DeployerContext(settings, cached_catalog(settings.backends_file), Targets(settings))


def job_handlers(settings: Settings, deployer: DeployerContext | None = None) -> dict[str, Handler]:
    from atoll.deployer import reconcile, rollouts

    def expire_sessions(session: Session, _payload: dict[str, Any]) -> dict[str, Any]:
        return {"expired": auth_service.expire_sessions(session)}

    context = deployer or deployer_context(settings)
    handlers: dict[str, Handler] = {
        EXPIRE_SESSIONS_JOB: expire_sessions,
        ROLLOUT_JOB: rollouts.handler(context),
        RECONCILE_JOB: reconcile.handler(context),
    }
    if settings.mlflow_tracking_uri:
        from atoll.backends import cached_catalog
        from atoll.registry.builds.job import handler as build_handler
        from atoll.registry.builds.service import BUILD_JOB
        from atoll.registry.mlflow.adapter import MlflowRegistry
        from atoll.registry.sync import full_sync

        registry = MlflowRegistry(settings.mlflow_tracking_uri)
        catalog = cached_catalog(settings.backends_file)

        def sync(session: Session, _payload: dict[str, Any]) -> dict[str, Any]:
            # Also queues builds for versions found first by this sync (see full_sync).
            return full_sync(session, registry, catalog=catalog).__dict__

        handlers[SYNC_JOB] = sync
        handlers[BUILD_JOB] = build_handler(registry, catalog, settings.data_dir)
    return handlers


def schedules(settings: Settings) -> dict[str, float]:
    """Job kind → period in seconds; the worker enqueues each once per period."""
    periodic = {EXPIRE_SESSIONS_JOB: 3600.0, RECONCILE_JOB: float(settings.reconcile_interval_seconds)}
    if settings.mlflow_tracking_uri:
        periodic[SYNC_JOB] = float(settings.sync_interval_seconds)
    return periodic
