"""Durable jobs: a queue in the platform database with retries, backoff and leases.

A worker claims a job by taking a lease (`lease_until`). A worker that dies stops renewing
it, so once the lease lapses any other worker may claim the job again. On PostgreSQL the
claim uses `FOR UPDATE SKIP LOCKED`, so many workers never wait on each other; on SQLite
(one machine) the claim is a compare-and-set `UPDATE`, which is correct there too.
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, String, Text, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from atoll.db import Base, unit_of_work, utcnow

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, DEAD = "queued", "running", "succeeded", "dead"
MAX_BACKOFF_SECONDS = 3600


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    run_after: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    lease_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


Handler = Callable[[Session, dict[str, Any]], dict[str, Any] | None]
#: Called once, in its own transaction, when a job of its kind has failed its last attempt
#: (payload, last error): for kinds whose death would leave state behind, e.g. a canary
#: holding an endpoint's traffic at a partial split.
DeadHandler = Callable[[Session, dict[str, Any], str], None]


class RetryLater(Exception):
    """Raised by a handler to be retried without counting as an error in the log."""


def enqueue(
    session: Session,
    *,
    kind: str,
    payload: dict[str, Any] | None = None,
    max_attempts: int = 5,
    run_after: datetime | None = None,
    dedupe_key: str | None = None,
) -> Job:
    """Add a job in the caller's transaction: it exists only if the caller commits."""
    if dedupe_key is not None:
        existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        if existing is not None:
            return existing
    job = Job(
        kind=kind,
        payload=payload or {},
        max_attempts=max_attempts,
        run_after=run_after or utcnow(),
        dedupe_key=dedupe_key,
    )
    session.add(job)
    session.flush()
    return job


def backoff(attempt: int, base_seconds: float = 2.0) -> timedelta:
    """Exponential backoff: 2 s, 4 s, 8 s ... capped at an hour."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempt - 1, 0), MAX_BACKOFF_SECONDS))


def claim(session: Session, *, worker_id: str, lease: timedelta, kinds: list[str]) -> Job | None:
    """Lease the oldest runnable job of the given kinds, or return None."""
    now = utcnow()
    runnable = or_(
        (Job.status == QUEUED) & (Job.run_after <= now),
        (Job.status == RUNNING) & (Job.lease_until < now),
    )
    candidate = session.scalar(
        select(Job)
        .where(runnable, Job.kind.in_(kinds))
        .order_by(Job.run_after, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if candidate is None:
        return None
    taken = session.execute(
        update(Job)
        .where(Job.id == candidate.id, runnable)
        .values(
            status=RUNNING,
            attempts=Job.attempts + 1,
            lease_until=now + lease,
            locked_by=worker_id,
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    session.refresh(candidate)
    return candidate


def heartbeat(session: Session, *, job_id: int, worker_id: str, lease: timedelta) -> bool:
    """Extend a lease this worker still holds; False means the job was taken from it."""
    extended = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == RUNNING)
        .values(lease_until=utcnow() + lease)
    )
    return bool(extended.rowcount)  # type: ignore[attr-defined]


def _finish(session: Session, job_id: int, worker_id: str, **values: Any) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == RUNNING)
        .values(lease_until=None, **values)
    )


def complete(session: Session, *, job: Job, worker_id: str, result: dict[str, Any] | None) -> None:
    _finish(session, job.id, worker_id, status=SUCCEEDED, result=result, finished_at=utcnow())


def fail(session: Session, *, job: Job, worker_id: str, error: str) -> bool:
    """Record a failed attempt; True when it was the last one (the job is now dead)."""
    if job.attempts >= job.max_attempts:
        _finish(session, job.id, worker_id, status=DEAD, last_error=error, finished_at=utcnow())
        return True
    _finish(
        session,
        job.id,
        worker_id,
        status=QUEUED,
        last_error=error,
        run_after=utcnow() + backoff(job.attempts),
    )
    return False


@dataclass
class Worker:
    """Runs registered handlers for claimed jobs until stopped.

    `atoll up` runs one in a thread; `atoll worker` runs it as the process's main loop.
    """

    factory: sessionmaker[Session]
    handlers: dict[str, Handler]
    lease: timedelta = timedelta(seconds=60)
    poll_seconds: float = 1.0
    worker_id: str = ""
    periodic: dict[str, float] = field(default_factory=dict)  # kind -> every N seconds
    on_dead: dict[str, DeadHandler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.worker_id = self.worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run_forever(self) -> None:
        log.info("worker started", extra={"worker_id": self.worker_id, "kinds": sorted(self.handlers)})
        while not self._stop.is_set():
            self.schedule_due()
            if not self.run_once():
                self._stop.wait(self.poll_seconds)

    def schedule_due(self) -> None:
        """Enqueue each periodic job once per period, however many workers run this."""
        if not self.periodic:
            return
        now = utcnow().timestamp()
        for kind, every in self.periodic.items():
            try:
                with unit_of_work(self.factory) as session:
                    enqueue(session, kind=kind, dedupe_key=f"{kind}@{int(now // every)}", max_attempts=1)
            except IntegrityError:
                pass  # another worker enqueued this period's job a moment earlier

    def run_once(self) -> bool:
        """Claim and run one job; False when there was nothing to do."""
        if not self.handlers:
            return False
        with unit_of_work(self.factory) as session:
            job = claim(session, worker_id=self.worker_id, lease=self.lease, kinds=list(self.handlers))
            if job is None:
                return False
            session.expunge(job)
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        done = threading.Event()
        beat = threading.Thread(target=self._keep_leased, args=(job.id, done), daemon=True)
        beat.start()
        try:
            with unit_of_work(self.factory) as session:
                result = self.handlers[job.kind](session, dict(job.payload))
            with unit_of_work(self.factory) as session:
                complete(session, job=job, worker_id=self.worker_id, result=result)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, RetryLater):
                log.warning("job failed", extra={"job_id": job.id, "kind": job.kind, "error": error})
                error += "\n" + traceback.format_exc(limit=5)
            with unit_of_work(self.factory) as session:
                dead = fail(session, job=job, worker_id=self.worker_id, error=error[:4000])
            if dead and job.kind in self.on_dead:
                self._bury(job, error)
        finally:
            done.set()
            beat.join()

    def _bury(self, job: Job, error: str) -> None:
        try:
            with unit_of_work(self.factory) as session:
                self.on_dead[job.kind](session, dict(job.payload), error.splitlines()[0])
        except Exception:
            log.exception("dead-job handler failed", extra={"job_id": job.id, "kind": job.kind})

    def _keep_leased(self, job_id: int, done: threading.Event) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not done.wait(interval):
            with unit_of_work(self.factory) as session:
                if not heartbeat(session, job_id=job_id, worker_id=self.worker_id, lease=self.lease):
                    return


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: str
    attempts: int
    max_attempts: int
    run_after: datetime
    last_error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


def search(
    session: Session, *, status: str | None, kind: str | None, limit: int, offset: int
) -> tuple[list[Job], int]:
    query = select(Job)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Job.id.desc()).limit(limit).offset(offset))
    return list(rows), total
