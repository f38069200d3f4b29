"""The durable job queue: retries, backoff, leases, and one job to one worker at a time."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from atoll import jobs
from atoll.db import unit_of_work, utcnow
from atoll.jobs import Job, Worker


def _enqueue(factory: sessionmaker[Session], count: int = 1, **kwargs: Any) -> list[int]:
    with unit_of_work(factory) as session:
        return [jobs.enqueue(session, kind="test.echo", payload={"i": i}, **kwargs).id for i in range(count)]


def _job(factory: sessionmaker[Session], job_id: int) -> Job:
    with unit_of_work(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


class TestRunning:
    def test_success_stores_result(self, session_factory: sessionmaker[Session]) -> None:
        [job_id] = _enqueue(session_factory)
        worker = Worker(session_factory, {"test.echo": lambda _s, payload: {"echo": payload["i"]}})
        assert worker.run_once() is True
        assert worker.run_once() is False
        job = _job(session_factory, job_id)
        assert (job.status, job.result, job.attempts) == ("succeeded", {"echo": 0}, 1)
        assert job.finished_at is not None and job.lease_until is None

    def test_handler_writes_commit_with_the_job(self, session_factory: sessionmaker[Session]) -> None:
        from atoll import audit

        def handler(session: Session, _payload: dict[str, Any]) -> None:
            audit.record(session, actor=None, action="test.ran", target_type="job", target_id="x")

        _enqueue(session_factory)
        Worker(session_factory, {"test.echo": handler}).run_once()
        with unit_of_work(session_factory) as session:
            assert session.scalar(select(audit.AuditEvent.actor)) == "system"

    def test_only_registered_kinds_are_claimed(self, session_factory: sessionmaker[Session]) -> None:
        _enqueue(session_factory)
        assert Worker(session_factory, {"other.kind": lambda _s, _p: None}).run_once() is False

    def test_dedupe_key_enqueues_once(self, session_factory: sessionmaker[Session]) -> None:
        first = _enqueue(session_factory, dedupe_key="build:m:1:gpu")
        second = _enqueue(session_factory, dedupe_key="build:m:1:gpu")
        assert first == second


class TestFailures:
    def test_failure_retries_with_backoff_then_dies(self, session_factory: sessionmaker[Session]) -> None:
        [job_id] = _enqueue(session_factory, max_attempts=2)

        def boom(_s: Session, _p: dict[str, Any]) -> None:
            raise RuntimeError("model store down")

        worker = Worker(session_factory, {"test.echo": boom})
        before = utcnow()
        worker.run_once()
        job = _job(session_factory, job_id)
        assert job.status == "queued" and job.attempts == 1
        assert "RuntimeError: model store down" in (job.last_error or "")
        assert job.run_after >= before + timedelta(seconds=2) - timedelta(milliseconds=50)
        assert worker.run_once() is False, "backoff must delay the retry"
        with unit_of_work(session_factory) as session:
            session.execute(update(Job).values(run_after=utcnow()))
        worker.run_once()
        job = _job(session_factory, job_id)
        assert (job.status, job.attempts) == ("dead", 2)

    def test_the_dead_handler_runs_once_on_the_last_failure_and_its_own_error_is_contained(
        self, session_factory: sessionmaker[Session]
    ) -> None:
        [first, second] = _enqueue(session_factory, count=2, max_attempts=2)
        buried: list[tuple[dict[str, Any], str]] = []

        def boom(_s: Session, _p: dict[str, Any]) -> None:
            raise RuntimeError("model store down\nsecond line")

        def bury(_s: Session, payload: dict[str, Any], error: str) -> None:
            buried.append((payload, error))
            if payload["i"] == 1:
                raise ValueError("the undo failed too")

        worker = Worker(session_factory, {"test.echo": boom}, on_dead={"test.echo": bury})
        assert worker.run_once() and worker.run_once()
        assert buried == [], "not before the last attempt"
        with unit_of_work(session_factory) as session:
            session.execute(update(Job).values(run_after=utcnow()))
        assert worker.run_once() and worker.run_once()
        assert buried == [
            ({"i": 0}, "RuntimeError: model store down"),
            ({"i": 1}, "RuntimeError: model store down"),
        ]
        assert {_job(session_factory, j).status for j in (first, second)} == {"dead"}
        assert worker.run_once() is False

    def test_backoff_grows_and_is_capped(self) -> None:
        assert [jobs.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
        assert jobs.backoff(50).total_seconds() == jobs.MAX_BACKOFF_SECONDS

    def test_a_dead_workers_job_runs_again_after_its_lease(
        self, session_factory: sessionmaker[Session]
    ) -> None:
        [job_id] = _enqueue(session_factory)
        lease = timedelta(seconds=30)
        with unit_of_work(session_factory) as session:  # worker A claims, then "dies"
            claimed = jobs.claim(session, worker_id="A", lease=lease, kinds=["test.echo"])
            assert claimed is not None and claimed.id == job_id
        with unit_of_work(session_factory) as session:
            assert jobs.claim(session, worker_id="B", lease=lease, kinds=["test.echo"]) is None
            session.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
        worker_b = Worker(session_factory, {"test.echo": lambda _s, _p: {"by": "B"}}, worker_id="B")
        assert worker_b.run_once() is True
        job = _job(session_factory, job_id)
        assert (job.status, job.attempts, job.locked_by, job.result) == (
            "succeeded",
            2,
            "B",
            {"by": "B"},
        )
        with unit_of_work(session_factory) as session:  # A's late completion changes nothing
            jobs.complete(session, job=claimed, worker_id="A", result={"by": "A"})
        assert _job(session_factory, job_id).result == {"by": "B"}

    def test_heartbeat_keeps_a_long_job_leased(self, session_factory: sessionmaker[Session]) -> None:
        [job_id] = _enqueue(session_factory)
        stolen: list[Job | None] = []

        def slow(_s: Session, _p: dict[str, Any]) -> None:
            threading.Event().wait(0.9)  # three lease lengths
            with unit_of_work(session_factory) as session:
                stolen.append(
                    jobs.claim(session, worker_id="thief", lease=timedelta(seconds=1), kinds=["test.echo"])
                )

        Worker(session_factory, {"test.echo": slow}, lease=timedelta(seconds=0.3)).run_once()
        assert stolen == [None]
        assert _job(session_factory, job_id).status == "succeeded"


def test_concurrent_workers_never_share_a_job(session_factory: sessionmaker[Session]) -> None:
    ids = _enqueue(session_factory, count=40)
    runs: list[int] = []
    lock = threading.Lock()

    def record(_s: Session, payload: dict[str, Any]) -> None:
        with lock:
            runs.append(payload["i"])

    workers = [Worker(session_factory, {"test.echo": record}, worker_id=f"w{i}") for i in range(4)]

    def drain(worker: Worker) -> None:
        idle = 0
        while idle < 3:
            idle = 0 if worker.run_once() else idle + 1

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(runs) == list(range(40)), "each job runs exactly once"
    with unit_of_work(session_factory) as session:
        statuses = session.scalars(select(Job.status).where(Job.id.in_(ids))).all()
    assert set(statuses) == {"succeeded"}
