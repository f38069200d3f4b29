"""Monitors API: monitors, their reference sets, runs (queued as jobs), reports and serving health.

Reading needs the `read` scope; every change needs `deploy` (monitors sit beside the
deployments they watch) and writes an audit row. Thin: parse, authorise, call the service.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Depends, File, Path, Query, Response, UploadFile, status
from fastapi.responses import FileResponse

from atoll.db import utcnow
from atoll.errors import NotFound
from atoll.monitoring import health, runs, service
from atoll.monitoring.models import MonitorRun
from atoll.monitoring.monitor_schemas import (
    DNS_1123_LABEL,
    ColumnResultRead,
    MonitorCreate,
    MonitorRead,
    MonitorUpdate,
    ReferenceRead,
    RunDetail,
    RunQueued,
    RunRead,
    TrainingDataVersion,
)
from atoll.registry.training_data import TrainingDataAccess
from atoll.schemas import Page
from atoll.web.deps import DbId, Deployer, OptionalRegistryDep, PageDep, Reader, SessionDep, SettingsDep
from atoll.web.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["monitors"])

MonitorNamePath = Annotated[
    str, Path(pattern=DNS_1123_LABEL, max_length=63, description="A DNS-1123 label, e.g. fraud-drift")
]
#: Evidently's report runs scripts: only inline ones, in a sandbox (a unique origin, so they
#: cannot read the portal's cookies or call its API), framed only by the portal itself.
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'; "
    "frame-ancestors 'self'; sandbox allow-scripts"
)


def run_read(run: MonitorRun) -> RunRead:
    return RunRead.model_validate(run)


def training_access(registry: OptionalRegistryDep, settings: SettingsDep) -> TrainingDataAccess:
    """What reading a version's training data needs; MLflow is only called when it is chosen."""
    return TrainingDataAccess(registry=registry, local_roots=tuple(settings.training_data_roots))


TrainingAccessDep = Annotated[TrainingDataAccess, Depends(training_access)]


@router.get("/monitors")
def list_monitors(
    principal: Reader, session: SessionDep, page: PageDep, endpoint: str | None = None
) -> Page[MonitorRead]:
    rows, total = service.search(session, endpoint=endpoint, limit=page.limit, offset=page.offset)
    return Page(
        items=[service.read(session, m) for m in rows], total=total, limit=page.limit, offset=page.offset
    )


@router.post("/monitors", status_code=status.HTTP_201_CREATED, responses=errors(409, 503))
def create_monitor(
    body: MonitorCreate, principal: Deployer, session: SessionDep, training: TrainingAccessDep
) -> MonitorRead:
    """A monitor on an endpoint. With `reference.source = window` the reference is built now
    from that past window of the endpoint's log; with `training_data`, from a model version's
    training data in MLflow (default: the version the endpoint's stable deployment serves);
    with `upload`, upload it next."""
    return service.read(session, service.create(session, actor=principal, body=body, training=training))


@router.get("/monitors/{name}")
def get_monitor(name: MonitorNamePath, principal: Reader, session: SessionDep) -> MonitorRead:
    return service.read(session, service.get(session, name))


@router.patch("/monitors/{name}")
def update_monitor(
    name: MonitorNamePath, body: MonitorUpdate, principal: Deployer, session: SessionDep
) -> MonitorRead:
    return service.read(session, service.update(session, actor=principal, name=name, body=body))


@router.delete("/monitors/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_monitor(
    name: MonitorNamePath, principal: Deployer, session: SessionDep, settings: SettingsDep
) -> Response:
    service.delete(session, actor=principal, name=name, reports_root=runs.reports_root(settings.data_dir))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/monitors/{name}/reference",
    status_code=status.HTTP_201_CREATED,
    max_body_size=service.MAX_REFERENCE_BYTES,
)
def upload_reference(
    name: MonitorNamePath,
    principal: Deployer,
    session: SessionDep,
    file: Annotated[UploadFile, File(description="CSV (with a header row) or Parquet, the spec's columns")],
) -> ReferenceRead:
    """Replace the reference set (64 MiB at most; columns beyond the spec's are dropped)."""
    reference = service.set_reference(
        session, actor=principal, name=name, data=file.file, filename=file.filename
    )
    return ReferenceRead.model_validate(reference)


@router.post(
    "/monitors/{name}/reference/training-data", status_code=status.HTTP_201_CREATED, responses=errors(503)
)
def load_training_reference(
    name: MonitorNamePath,
    principal: Deployer,
    session: SessionDep,
    training: TrainingAccessDep,
    body: Annotated[TrainingDataVersion | None, Body()] = None,
) -> ReferenceRead:
    """Replace the reference with a model version's training data from MLflow: its lineage
    `training_data`, else its run's dataset input logged with context `training`. No body:
    the version the endpoint's stable deployment serves now (reload it after a promotion)."""
    reference = service.set_training_reference(
        session, actor=principal, name=name, choice=body or TrainingDataVersion(), training=training
    )
    return ReferenceRead.model_validate(reference)


@router.post("/monitors/{name}/runs", status_code=status.HTTP_202_ACCEPTED, responses=errors(409))
def run_monitor(name: MonitorNamePath, principal: Deployer, session: SessionDep) -> RunQueued:
    """Check the window that ends now, in a job (poll the run or `/api/v1/jobs/{id}`)."""
    job, run = runs.run_now(session, actor=principal, name=name)
    return RunQueued(job_id=job.id, run_id=run.id, window_start=run.window_start, window_end=run.window_end)


@router.get("/monitors/{name}/runs")
def list_runs(
    name: MonitorNamePath,
    principal: Reader,
    session: SessionDep,
    page: PageDep,
    group: Annotated[str | None, Query(max_length=255, description="`all` or e.g. `deployment=a`")] = None,
) -> Page[RunRead]:
    """Newest window first; each window has an `all` row and one per group the monitor splits by."""
    monitor = service.get(session, name)
    rows, total = runs.list_runs(session, monitor, limit=page.limit, offset=page.offset, group=group)
    return Page(items=[run_read(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/monitors/{name}/runs/{run_id}")
def get_run(name: MonitorNamePath, run_id: DbId, principal: Reader, session: SessionDep) -> RunDetail:
    run = runs.get_run(session, service.get(session, name), run_id)
    columns = [ColumnResultRead.model_validate(c) for c in runs.columns_of(session, run)]
    return RunDetail(**run_read(run).model_dump(), columns=columns)


@router.get(
    "/monitors/{name}/runs/{run_id}/report",
    response_class=FileResponse,
    responses={200: {"description": "Evidently's HTML report", "content": {"text/html": {}}}},
)
def get_report(
    name: MonitorNamePath, run_id: DbId, principal: Reader, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """Evidently's report of the run, served sandboxed (see `REPORT_CSP`)."""
    run = runs.get_run(session, service.get(session, name), run_id)
    path = runs.report_file(run, runs.reports_root(settings.data_dir))
    if path is None:
        raise NotFound(f"run {run_id} has no report ({run.state}: {run.message or 'no report was written'})")
    return FileResponse(
        path,
        media_type="text/html",
        headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"},
    )


@router.get("/monitors/{name}/health")
def serving_health(
    name: MonitorNamePath,
    principal: Reader,
    session: SessionDep,
    hours: Annotated[float, Query(gt=0, le=24 * 31, description="How far back")] = 24.0,
    bucket_seconds: Annotated[int, Query(ge=10, le=86400, description="Bucket width")] = 3600,
) -> list[health.HealthSeries]:
    """Latency p50/p95/p99, error rate and throughput per deployment and backend over time."""
    monitor = service.get(session, name)
    end = utcnow()
    return health.serving_health(
        session,
        endpoint=monitor.endpoint,
        start=end - timedelta(hours=hours),
        end=end,
        bucket_seconds=bucket_seconds,
    )
