"""Drift runs as durable jobs: the scheduler that queues them and the job that runs one.

**Scheduling.** `monitoring.schedule` is a periodic job (every `SCHEDULE_PERIOD_SECONDS`).
For each enabled monitor with a reference set it computes the current window end, aligned
to the monitor's schedule (`floor(now / schedule) * schedule`), and queues a run for it
unless one exists. The run row `(monitor, window_end, "all")` is unique and the job's
dedupe key is `monitoring.run:{monitor}@{window_end}`, so running the scheduler twice, on
two workers at once, or again after a restart queues each window once.

**A run** (`monitoring.run`, payload `{"run_id"}`): marks the run `running` (committed,
so the portal shows progress), drops what an earlier attempt of the same run left (a
worker that died mid-run: the job's lease lapses and another worker takes it), then
loads the reference and the window and commits, runs the fast engine on all traffic and on
each group the monitor splits by and has Evidently write the HTML report (on at most
`checks.EVIDENTLY_SAMPLE_ROWS` rows, see docs/monitoring.md) with no transaction open, and
writes the per-column results and verdicts in one transaction with the monitor's new
status, the alert and the evidence, so a crash before the end leaves nothing half-written.
An empty window is `no_data` (no alert, no evidence); a window that cannot be checked
(e.g. columns differ from the reference) or an Evidently failure marks the run `failed`
with the message and the job still succeeds, so the schedule goes on.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from atoll import audit, jobs
from atoll.auth.policy import Principal
from atoll.db import utcnow
from atoll.errors import AtollError, Conflict, NotFound
from atoll.jobs import Handler, Job
from atoll.monitoring import alerts, checks, service
from atoll.monitoring.models import ALL_TRAFFIC, Monitor, MonitorColumnResult, MonitorRun
from atoll.registry import evidence
from atoll.registry.schemas import EvidenceIn

log = logging.getLogger(__name__)

SCHEDULE_JOB = "monitoring.schedule"
RUN_JOB = "monitoring.run"
SCHEDULE_PERIOD_SECONDS = 30.0
FINAL_STATES = frozenset({"succeeded", "no_data", "failed"})


def aligned_window_end(monitor: Monitor, now: datetime) -> datetime:
    every = monitor.schedule_seconds
    return datetime.fromtimestamp(math.floor(now.timestamp() / every) * every, tz=UTC)


def queue_run(
    session: Session, monitor: Monitor, *, window_end: datetime, trigger: str
) -> tuple[Job, MonitorRun]:
    run = MonitorRun(
        monitor_id=monitor.id,
        trigger=trigger,
        window_start=window_end - timedelta(seconds=monitor.window_seconds),
        window_end=window_end,
        group_key=ALL_TRAFFIC,
        state="queued",
    )
    session.add(run)
    session.flush()
    stamp = int(window_end.timestamp() * 1_000_000)
    job = jobs.enqueue(
        session,
        kind=RUN_JOB,
        payload={"run_id": run.id},
        max_attempts=3,
        dedupe_key=f"{RUN_JOB}:{monitor.id}@{stamp}",
    )
    run.job_id = job.id
    return job, run


def schedule_due(session: Session, *, now: datetime | None = None) -> dict[str, Any]:
    """Queue this period's run of every due monitor, once (see the module docstring)."""
    now = now or utcnow()
    queued: list[str] = []
    monitors = list(session.scalars(select(Monitor).where(Monitor.enabled.is_(True)).order_by(Monitor.id)))
    for monitor in monitors:
        if service.reference_of(session, monitor) is None:
            continue
        end = aligned_window_end(monitor, now)
        exists = session.scalar(
            select(MonitorRun.id).where(
                MonitorRun.monitor_id == monitor.id,
                MonitorRun.window_end == end,
                MonitorRun.group_key == ALL_TRAFFIC,
            )
        )
        if exists is not None:
            continue
        try:
            with session.begin_nested():
                queue_run(session, monitor, window_end=end, trigger="schedule")
            queued.append(monitor.name)
        except IntegrityError:
            pass  # another scheduler queued this window a moment earlier
    return {"queued": queued}


def run_now(session: Session, *, actor: Principal, name: str) -> tuple[Job, MonitorRun]:
    """Queue a run over the window that ends now."""
    monitor = service.get(session, name)
    if service.reference_of(session, monitor) is None:
        raise Conflict(f"monitor {name!r} has no reference set yet; upload one first")
    job, run = queue_run(session, monitor, window_end=utcnow(), trigger="manual")
    audit.record(
        session,
        actor=actor,
        action="monitor.run",
        target_type="monitor",
        target_id=name,
        summary={"job_id": job.id, "run_id": run.id},
    )
    return job, run


def _previous_verdict(session: Session, monitor: Monitor, before: datetime) -> str:
    """ok, drift or degraded: the monitor's verdict on the latest earlier window that was checked."""
    end = session.scalar(
        select(MonitorRun.window_end)
        .where(
            MonitorRun.monitor_id == monitor.id,
            MonitorRun.group_key == ALL_TRAFFIC,
            MonitorRun.state == "succeeded",
            MonitorRun.window_end < before,
        )
        .order_by(MonitorRun.window_end.desc())
        .limit(1)
    )
    return _verdict(session, monitor, end) if end is not None else "ok"


def _window_rows(session: Session, monitor: Monitor, end: datetime) -> list[MonitorRun]:
    return list(
        session.scalars(
            select(MonitorRun).where(MonitorRun.monitor_id == monitor.id, MonitorRun.window_end == end)
        )
    )


def _verdict(session: Session, monitor: Monitor, end: datetime) -> str:
    return window_verdict(_window_rows(session, monitor, end))


def window_verdict(rows: list[MonitorRun]) -> str:
    """drift when any row drifted, else degraded when any row's model quality breached, else ok."""
    statuses = {r.status for r in rows}
    return "drift" if "drift" in statuses else "degraded" if "degraded" in statuses else "ok"


def _drifted_columns(session: Session, runs: list[MonitorRun]) -> list[str]:
    return sorted(
        set(
            session.scalars(
                select(MonitorColumnResult.column).where(
                    MonitorColumnResult.run_id.in_([r.id for r in runs]),
                    MonitorColumnResult.drifted.is_(True),
                )
            )
        )
    )


def _breaches(rows: list[MonitorRun]) -> dict[str, list[str]]:
    """Per run row (group key) the quality metrics past their max_drop."""
    return {r.group_key: r.quality["breached"] for r in rows if r.quality and r.quality.get("breached")}


def _record_evidence(session: Session, monitor: Monitor, run: MonitorRun, rows: list[MonitorRun]) -> None:
    """Drift evidence on each version the window covered, from the most specific rows covering it."""
    groups = [r for r in rows if r.group_key != ALL_TRAFFIC] or [run]
    for name, version in run.model_versions:
        covering = [r for r in groups if [name, version] in r.model_versions] or [run]
        drifted = any(r.status == "drift" for r in covering)
        body = EvidenceIn(
            kind="drift",
            status="alert" if drifted else "ok",
            summary={
                "monitor": monitor.name,
                "endpoint": monitor.endpoint,
                "run_id": run.id,
                "window_end": run.window_end.isoformat(),
                "rule": run.alert_rule,
                "groups": {r.group_key: r.status for r in covering},
                "drift_share": max((r.drift_share or 0.0) for r in covering),
            },
            source=f"monitor:{monitor.name}"[:255],
        )
        try:
            evidence.record(session, actor=None, name=name, version=int(version), body=body)
        except NotFound:
            log.info("no registry version for drift evidence", extra={"model": name, "version": version})


def _conclude(session: Session, monitor: Monitor, run: MonitorRun) -> None:
    """The monitor's new status; on a change between ok, drift and degraded, the alert; evidence."""
    rows = _window_rows(session, monitor, run.window_end)
    status = run.state if run.state in ("failed", "no_data") else window_verdict(rows)
    now = utcnow()
    if status != monitor.status:
        monitor.status_changed_at = now
    monitor.status = status
    monitor.last_run_at = now
    if status not in ("ok", "drift", "degraded"):
        return
    previous = _previous_verdict(session, monitor, run.window_end)
    if status != previous:
        columns = _drifted_columns(session, rows)
        alerts.queue(session, monitor, run, previous, status, columns, _breaches(rows))
    _record_evidence(session, monitor, run, rows)


def execute(session: Session, run_id: int, *, reports_root: Path) -> dict[str, Any]:
    run = session.get(MonitorRun, run_id)
    if run is None:
        return {"skipped": "the run was deleted"}
    if run.state in FINAL_STATES:
        return {"state": run.state, "repeated": True}
    monitor = session.get(Monitor, run.monitor_id)
    assert monitor is not None  # runs are deleted with their monitor
    # What an earlier attempt of this run left behind, if a worker died part-way.
    session.execute(
        delete(MonitorRun).where(
            MonitorRun.monitor_id == monitor.id,
            MonitorRun.window_end == run.window_end,
            MonitorRun.group_key != ALL_TRAFFIC,
        )
    )
    session.execute(delete(MonitorColumnResult).where(MonitorColumnResult.run_id == run.id))
    run.state, run.started_at, run.message, run.report_path = "running", utcnow(), None, None
    session.commit()
    try:
        loaded = checks.load(session, monitor, run)
        session.commit()  # no transaction open while the engine and Evidently run (see checks.py)
        checked = checks.compute(monitor, run, loaded, reports_root)
    except AtollError as exc:
        checked = checks.Checked(state="failed", message=exc.detail)
    except Exception as exc:  # a bug or a broken reference: the run says so, the schedule goes on
        log.exception("drift run failed", extra={"monitor": monitor.name, "run_id": run.id})
        checked = checks.Checked(state="failed", message=f"{type(exc).__name__}: {exc}")
    checks.store(session, monitor, run, checked)
    _conclude(session, monitor, run)
    return {"run_id": run.id, "state": run.state, "status": monitor.status, "rows": run.rows}


def run_handler(reports_root: Path) -> Handler:
    def handle(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return execute(session, int(payload["run_id"]), reports_root=reports_root)

    return handle


def schedule_handler(session: Session, _payload: dict[str, Any]) -> dict[str, Any]:
    return schedule_due(session)


def reports_root(data_dir: Path) -> Path:
    return data_dir / "monitoring" / "reports"


def report_file(run: MonitorRun, root: Path) -> Path | None:
    """The run's report, only when it lies under the reports folder (the path is stored)."""
    if not run.report_path:
        return None
    path = Path(run.report_path).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path


def get_run(session: Session, monitor: Monitor, run_id: int) -> MonitorRun:
    run = session.get(MonitorRun, run_id)
    if run is None or run.monitor_id != monitor.id:
        raise NotFound(f"monitor {monitor.name!r} has no run {run_id}")
    return run


def list_runs(
    session: Session, monitor: Monitor, *, limit: int, offset: int, group: str | None = None
) -> tuple[list[MonitorRun], int]:
    query = select(MonitorRun).where(MonitorRun.monitor_id == monitor.id)
    if group:
        query = query.where(MonitorRun.group_key == group)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(MonitorRun.window_end.desc(), MonitorRun.id).limit(limit).offset(offset)
    )
    return list(rows), total


def columns_of(session: Session, run: MonitorRun) -> list[MonitorColumnResult]:
    return list(
        session.scalars(
            select(MonitorColumnResult)
            .where(MonitorColumnResult.run_id == run.id)
            .order_by(MonitorColumnResult.id)
        )
    )
