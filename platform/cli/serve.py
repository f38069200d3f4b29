"""`atoll serve`: run the model server for one build directory (or an MLflow model, built on the fly)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from atoll.cli.output import console, fail

if TYPE_CHECKING:
    from atoll.backends import Catalog


def serve(
    build_dir: Annotated[
        Path | None, typer.Argument(help="Build directory holding model.onnx and build.json")
    ] = None,
    model_uri: Annotated[
        str | None, typer.Option("--model-uri", help="models:/NAME/VERSION: build it now, into a temp dir")
    ] = None,
    backend: Annotated[str, typer.Option(help="Backend of the on-the-fly build (--model-uri)")] = "cpu",
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port")] = 8080,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint name in the event log")] = None,
    deployment: Annotated[str | None, typer.Option(help="Deployment name in the event log")] = None,
    max_batch: Annotated[
        int | None, typer.Option(min=1, max=4096, help="Rows per model call (default: build/backend)")
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(min=0, max=1000, help="Longest wait to fill a batch (default: build/backend)"),
    ] = None,
    max_rows: Annotated[int, typer.Option(min=1, help="Most rows in one request (more: 413)")] = 10_000,
    max_body_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest request body in MiB (more: 413)")
    ] = 16.0,
    threads: Annotated[
        int | None, typer.Option(min=1, help="ONNX Runtime intra-op threads (default: half the cores)")
    ] = None,
    drain_seconds: Annotated[float, typer.Option(min=0, help="Longest graceful drain on SIGTERM")] = 30.0,
    fault_rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="TEST FAULT: answer this share of predictions with 500 (default ATOLL_SERVE_FAULT_RATE, 0)",
        ),
    ] = None,
) -> None:
    """Serve one build: Open Inference Protocol v2, MLflow /invocations, /metrics."""
    import tempfile

    from atoll.backends import CatalogError, cached_catalog
    from atoll.cli.processes import _settings
    from atoll.deployer.serving.run import run_server
    from atoll.deployer.serving.state import ServerConfig
    from atoll.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    if (build_dir is None) == (model_uri is None):
        fail("give a BUILD_DIR or --model-uri models:/NAME/VERSION (one of them)", 2)
    try:
        catalog = cached_catalog(settings.backends_file)
    except CatalogError as exc:
        fail(str(exc), 2)
    with tempfile.TemporaryDirectory(prefix="atoll-serve-") as scratch:
        if model_uri is not None:
            build_dir = _build_on_the_fly(
                model_uri, backend, Path(scratch), settings.mlflow_tracking_uri, catalog
            )
        assert build_dir is not None
        if not build_dir.is_dir():
            fail(f"{build_dir} is not a directory", 2)
        config = ServerConfig(
            build_dir=build_dir.resolve(),
            endpoint=endpoint,
            deployment=deployment,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_rows=max_rows,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            threads=threads,
            catalog=catalog,
            fault_rate=settings.serve_fault_rate if fault_rate is None else fault_rate,
        )
        run_server(
            config,
            host=host,
            port=port,
            database_url=settings.effective_database_url,
            drain_seconds=drain_seconds,
        )


def _build_on_the_fly(
    model_uri: str, backend: str, scratch: Path, tracking_uri: str, catalog: Catalog
) -> Path:
    from atoll.errors import AtollError
    from atoll.registry.builds.job import build_for_serving
    from atoll.registry.mlflow.adapter import MlflowRegistry

    if not tracking_uri:
        fail("--model-uri needs ATOLL_MLFLOW_TRACKING_URI (the MLflow server holding the model)", 2)
    console.print(f"building {model_uri} for backend {backend} into {scratch} ...", highlight=False)
    try:
        return build_for_serving(MlflowRegistry(tracking_uri), catalog, model_uri, backend, scratch)
    except AtollError as exc:
        fail(exc.detail, 2 if exc.status in {404, 422} else 6)


def register(app: typer.Typer) -> None:
    app.command()(serve)
