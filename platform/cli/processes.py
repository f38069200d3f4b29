"""Commands that start processes: up, server, worker, router, db.

`atoll up` also runs the local target's supervisor (one `atoll serve` per local
deployment) and the router as a child process. Stopping it (Ctrl+C, SIGTERM) stops the
router and drains and stops every local model server; their desired state stays in the
database and under the data directory, so the next `atoll up` starts them again. If `up`
dies without stopping (SIGKILL), the model servers keep running and the next `up` re-adopts
each one that still answers as the same build.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from atoll.cli.output import console, fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from atoll.jobs import Worker
    from atoll.settings import Settings

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


def _settings() -> Settings:
    from atoll.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


def _worker(settings: Settings, factory: sessionmaker[Session]) -> Worker:
    from datetime import timedelta

    from atoll.cli.runtime import dead_job_handlers, job_handlers, schedules
    from atoll.jobs import Worker

    return Worker(
        factory,
        job_handlers(settings),
        lease=timedelta(seconds=settings.job_lease_seconds),
        poll_seconds=settings.worker_poll_seconds,
        periodic=schedules(settings),
        on_dead=dead_job_handlers(),
    )


def up(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
) -> None:
    """Run everything on one machine: migrate, create the first admin, serve API + portal + worker."""
    import uvicorn

    from atoll import bootstrap, migrate
    from atoll.db import make_engine, make_session_factory, unit_of_work
    from atoll.deployer.routing.process import RouterProcess
    from atoll.deployer.targets.supervisor import LocalSupervisor, SupervisorRunning
    from atoll.errors import Unavailable
    from atoll.logs import configure_logging
    from atoll.registry.mlflow.embedded import EmbeddedMlflow
    from atoll.web.app import create_app

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded: EmbeddedMlflow | None = None
    if not settings.mlflow_tracking_uri:
        embedded = EmbeddedMlflow(settings.data_dir, settings.embedded_mlflow_port)
        console.print(f"starting the embedded MLflow at {embedded.uri} (first start takes about 30 s)...")
        settings = settings.model_copy(update={"mlflow_tracking_uri": embedded.start()})
    migrate.upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        admin = bootstrap.ensure_admin(
            session,
            data_dir=settings.data_dir,
            password=settings.admin_password.get_secret_value() if settings.admin_password else None,
        )
    bind_host, bind_port = host or settings.host, port or settings.port
    console.print(f"\n[bold green]Atoll is starting[/] at [link]http://{bind_host}:{bind_port}[/link]")
    if admin.password:
        console.print(f"  sign in as [bold]{admin.username}[/] / [bold]{admin.password}[/]")
    else:
        console.print(f"  sign in as [bold]{admin.username}[/] (password set earlier)")
    console.print(f"  data in {settings.data_dir.resolve()}\n")

    supervisor = LocalSupervisor.from_settings(settings)
    try:
        supervisor.start()
    except SupervisorRunning as exc:
        if embedded is not None:
            embedded.stop()
        fail(str(exc), 1)
    router = RouterProcess(settings, host=bind_host, port=settings.router_port)
    try:
        console.print(f"  endpoints at [link]{router.start()}/endpoints/NAME/...[/link]\n")
    except Unavailable as exc:
        console.print(f"[yellow]warning:[/] {exc.detail}; endpoints are not served (see `atoll router`)")
    runner = _worker(settings, factory)
    thread = threading.Thread(target=runner.run_forever, name="worker", daemon=True)
    thread.start()
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn that into SystemExit so the
    # `finally` below still stops the worker, the router, the model servers and MLflow.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(create_app(settings, engine=engine), host=bind_host, port=bind_port, log_config=None)
    finally:
        runner.stop()
        thread.join(timeout=10)
        router.stop()
        supervisor.stop(stop_servers=True)
        if embedded is not None:
            embedded.stop()


def server(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(min=1, help="Uvicorn worker processes")] = 1,
) -> None:
    """Serve the API and portal only (run `atoll worker` separately)."""
    import uvicorn

    from atoll.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "atoll.web.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=None,
    )


def worker() -> None:
    """Run durable jobs (builds, rollouts, drift runs...) until SIGTERM."""
    from atoll.db import make_engine, make_session_factory
    from atoll.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    runner = _worker(settings, make_session_factory(make_engine(settings.effective_database_url)))
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    runner.run_forever()


def router(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: router_port, 8001)")] = None,
) -> None:
    """Serve every endpoint's stable URL: /endpoints/NAME/... to its active deployment."""
    import uvicorn

    from atoll.deployer.routing.app import from_settings
    from atoll.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        from_settings(settings),
        host=host or settings.host,
        port=port or settings.router_port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        backlog=2048,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from atoll import migrate

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url, revision)
    console.print(f"database at revision {migrate.current(settings.effective_database_url)}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    from atoll import migrate

    settings = _settings()
    migrate.downgrade(settings.effective_database_url, revision)
    console.print(f"database at revision {migrate.current(settings.effective_database_url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from atoll import migrate

    console.print(migrate.current(_settings().effective_database_url) or "empty")


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(server)
    app.command()(worker)
    app.command()(router)
    app.add_typer(db_app, name="db")
