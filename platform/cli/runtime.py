"""Wiring for the processes the CLI starts: which job handlers and schedules a worker runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from atoll.auth import service as auth_service
from atoll.deployer.lifecycle import RECONCILE_JOB, ROLLOUT_JOB, DeployerContext
from atoll.jobs import DeadHandler, Handler
from atoll.settings import Settings

SYNC_JOB = "registry.sync"
EXPIRE_SESSIONS_JOB = "core.expire_sessions"


def job_handlers(settings: Settings, deployer: DeployerContext | None = None) -> dict[str, Handler]:
    from atoll.abtest.schedule import EXPERIMENTS_JOB, tick
    from atoll.deployer import canary, following, reconcile, rollouts
    from atoll.monitoring import alerts, runs

    def expire_sessions(session: Session, _payload: dict[str, Any]) -> dict[str, Any]:
        return {"expired": auth_service.expire_sessions(session)}

    context = deployer or DeployerContext.from_settings(settings)
    handlers: dict[str, Handler] = {
        EXPIRE_SESSIONS_JOB: expire_sessions,
        ROLLOUT_JOB: rollouts.handler(context),
        RECONCILE_JOB: reconcile.handler(context),
        canary.CANARY_JOB: canary.handler(),
        following.ALIAS_MOVED_JOB: following.handler(context),
        following.FOLLOW_CANARY_JOB: following.canary_handler(),
        runs.SCHEDULE_JOB: runs.schedule_handler,
        runs.RUN_JOB: runs.run_handler(runs.reports_root(settings.data_dir)),
        alerts.ALERT_JOB: alerts.deliver,
        EXPERIMENTS_JOB: tick,
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


def dead_job_handlers() -> dict[str, DeadHandler]:
    """Job kind → what to undo when a job of that kind fails its last attempt."""
    from atoll.deployer import canary

    return {canary.CANARY_JOB: canary.on_job_dead}


def schedules(settings: Settings) -> dict[str, float]:
    """Job kind → period in seconds; the worker enqueues each once per period."""
    from atoll.abtest.schedule import EXPERIMENTS_JOB, TICK_SECONDS
    from atoll.monitoring.runs import SCHEDULE_JOB as MONITOR_SCHEDULE_JOB
    from atoll.monitoring.runs import SCHEDULE_PERIOD_SECONDS

    periodic = {
        EXPIRE_SESSIONS_JOB: 3600.0,
        RECONCILE_JOB: float(settings.reconcile_interval_seconds),
        MONITOR_SCHEDULE_JOB: SCHEDULE_PERIOD_SECONDS,
        EXPERIMENTS_JOB: TICK_SECONDS,
    }
    if settings.mlflow_tracking_uri:
        periodic[SYNC_JOB] = float(settings.sync_interval_seconds)
    return periodic
