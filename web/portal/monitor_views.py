"""Portal pages of monitoring: the monitor list, a monitor's page (drift timeline, per-feature
table with reference-vs-window histograms, Evidently's report in a sandboxed frame, groups,
serving health) and "run now" with htmx progress.

Thin like the rest of the portal: the services behind `/api/v1/monitors`. Evidently's report
is the API's own route (`/api/v1/monitors/{name}/runs/{id}/report`, strict CSP), framed with
`<iframe sandbox="allow-scripts">`.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from atoll.auth.policy import Scope
from atoll.db import utcnow
from atoll.errors import AtollError, Forbidden
from atoll.monitoring import health, runs, service
from atoll.monitoring.models import ALL_TRAFFIC, Monitor, MonitorRun
from atoll.web.deps import SessionDep
from atoll.web.portal import drift_charts, quality_charts
from atoll.web.portal.render import render
from atoll.web.portal.views import Viewer, Writer

router = APIRouter(include_in_schema=False)
TIMELINE_WINDOWS = 60
HEALTH_HOURS = 24


@router.get("/monitoring", response_class=HTMLResponse)
def monitors_page(request: Request, principal: Viewer, session: SessionDep) -> Response:
    rows, total = service.search(session, limit=500)
    return render(request, "monitoring/monitors.html", principal=principal, monitors=rows, total=total)


@router.get("/endpoints/{name}/drift-banner", response_class=HTMLResponse)
def endpoint_drift_banner(request: Request, name: str, principal: Viewer, session: SessionDep) -> Response:
    """The endpoint page's drift slot: a banner per drifting monitor of the endpoint, or nothing."""
    banners = service.banner_for_endpoint(session, name)
    return render(request, "monitoring/_banner.html", principal=principal, banners=banners)


def _latest(session: SessionDep, monitor: Monitor) -> tuple[MonitorRun | None, list[MonitorRun]]:
    """The newest all-traffic run that finished, and the group rows of its window."""
    found, _ = runs.list_runs(session, monitor, limit=TIMELINE_WINDOWS, offset=0, group=ALL_TRAFFIC)
    finished = [r for r in found if r.state in runs.FINAL_STATES]
    if not finished:
        return None, []
    latest = finished[0]
    everything, _ = runs.list_runs(session, monitor, limit=200, offset=0)
    groups = [r for r in everything if r.window_end == latest.window_end and r.group_key != ALL_TRAFFIC]
    return latest, groups


@router.get("/monitoring/{name}", response_class=HTMLResponse)
def monitor_page(request: Request, name: str, principal: Viewer, session: SessionDep) -> Response:
    monitor = service.get(session, name)
    spec = service.spec_of(monitor)
    recent, _ = runs.list_runs(session, monitor, limit=TIMELINE_WINDOWS, offset=0, group=ALL_TRAFFIC)
    points = [
        drift_charts.TimelinePoint(r.window_end, r.drift_share, r.state, r.status, r.id)
        for r in recent
        if r.state in runs.FINAL_STATES
    ]
    latest, groups = _latest(session, monitor)
    columns = runs.columns_of(session, latest) if latest else []
    labels = service.labels_of(monitor)
    slices = [latest, *groups] if latest and labels else []
    end = utcnow()
    return render(
        request,
        "monitoring/monitor.html",
        principal=principal,
        m=monitor,
        spec=spec,
        reference=service.reference_of(session, monitor),
        banners=service.banner_for_endpoint(session, monitor.endpoint),
        timeline=drift_charts.timeline(points, threshold=spec.drift_share) if points else None,
        latest=latest,
        groups=groups,
        columns=[(c, drift_charts.histogram_bars(c.histogram)) for c in columns],
        recent=recent[:15],
        labels=labels,
        quality=[(r, quality_charts.table_rows(r.quality, labels)) for r in slices if labels],
        quality_timeline=quality_charts.timeline(recent, labels) if labels else None,
        headline=quality_charts.HEADLINE[labels.task] if labels else None,
        health=health.serving_health(
            session,
            endpoint=monitor.endpoint,
            start=end - timedelta(hours=HEALTH_HOURS),
            end=end,
            bucket_seconds=3600,
        ),
        can_run=principal.can(Scope.deploy),
    )


@router.post("/monitoring/{name}/run", response_class=HTMLResponse)
def run_now(request: Request, name: str, principal: Writer, session: SessionDep) -> Response:
    try:
        reason = principal.missing(Scope.deploy)
        if reason is not None:
            raise Forbidden(reason)
        _job, run = runs.run_now(session, actor=principal, name=name)
    except AtollError as exc:
        return render(
            request, "monitoring/_progress.html", principal=principal, error=exc.detail, run=None, name=name
        )
    return render(request, "monitoring/_progress.html", principal=principal, run=run, name=name, error=None)


@router.get("/monitoring/{name}/runs/{run_id}/progress", response_class=HTMLResponse)
def run_progress(
    request: Request, name: str, run_id: int, principal: Viewer, session: SessionDep
) -> Response:
    run = runs.get_run(session, service.get(session, name), run_id)
    return render(request, "monitoring/_progress.html", principal=principal, run=run, name=name, error=None)
