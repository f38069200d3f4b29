"""Outcome ingestion: events/s through the real API on PostgreSQL vs a bare psycopg COPY.

Atoll: `atoll server` (uvicorn, real auth, real audit row per batch) against a fresh
PostgreSQL database, `POST /api/v1/events/outcomes` in batches of 1,000 from `--concurrency`
clients. Anchor, in the same run: the same rows into the same table by psycopg `COPY`
(one COPY + commit per batch of 1,000, the same concurrency), the fastest way to put rows
into PostgreSQL. Goal: >= 50,000 events/s through the API.

Also printed: where the time of one batch goes inside the API (parse, validation, the
INSERT, the audit row), measured in-process on the same database.
Usage: uv run python bench/bench_outcome_ingest.py [--batches 200] [--concurrency 4] [--workers 2]
(PostgreSQL: $ATOLL_BENCH_POSTGRES_URL, default the URL `scripts/postgres.sh start` prints.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import orjson
import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

T0 = datetime(2026, 11, 2, tzinfo=UTC)
Row = dict[str, object]


def postgres_admin_url() -> str:
    url = os.environ.get("ATOLL_BENCH_POSTGRES_URL")
    if url:
        return url
    script = Path(__file__).resolve().parent.parent / "scripts" / "postgres.sh"
    return subprocess.run([str(script), "start"], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    from atoll.db import make_engine

    name = f"atoll_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_batches(count: int, size: int, tag: str) -> list[list[Row]]:
    return [
        [
            {
                "event_id": f"{tag}-{b}-{i}",
                "unit_id": f"user-{(b * size + i) % 250_000}",
                "metric": "purchase" if i % 3 else "revenue",
                "value": float(i % 50),
                "ts": (T0 + timedelta(seconds=b * size + i, microseconds=i)).isoformat(),
                "experiment": "checkout-2",
            }
            for i in range(size)
        ]
        for b in range(count)
    ]


def make_token(database_url: str) -> str:
    from atoll.auth import service
    from atoll.auth.policy import Role, Scope
    from atoll.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        user = service.create_user(
            session, actor=None, username="ingest-bench", password="bench-password-1", role=Role.engineer
        )
        actor = service.principal_for_user(user, via="bench")
        issued = service.create_token(
            session, actor=actor, name="bench", scopes=[Scope.ingest], expires_in_days=1
        )
    engine.dispose()
    return issued.secret


def wait_for(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def run_concurrently(jobs: Sequence[Callable[[], None]], concurrency: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    return time.perf_counter() - started


def through_api(base: str, token: str, bodies: list[bytes], concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    clients = [httpx.Client(base_url=base, headers=headers, timeout=120) for _ in range(concurrency)]
    slot = iter(range(len(bodies)))

    def post(body: bytes, client_index: int) -> None:
        response = clients[client_index].post("/api/v1/events/outcomes", content=body)
        if response.status_code != 200:
            raise SystemExit(f"ingest failed: {response.status_code} {response.text[:300]}")

    jobs = [partial(post, body, next(slot) % concurrency) for body in bodies]
    try:
        return run_concurrently(jobs, concurrency)
    finally:
        for client in clients:
            client.close()


def through_copy(dsn: str, batches: list[list[Row]], concurrency: int) -> float:
    columns = "event_id, ts, unit_id, metric, value, experiment, received_at"
    connections = [psycopg.connect(dsn) for _ in range(concurrency)]
    slot = iter(range(len(batches)))

    def copy(batch: list[Row], index: int) -> None:
        connection = connections[index]
        now = datetime.now(UTC)
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY outcome_events ({columns}) FROM STDIN") as sink,
        ):
            for r in batch:
                sink.write_row(
                    (r["event_id"], r["ts"], r["unit_id"], r["metric"], r["value"], r["experiment"], now)
                )
        connection.commit()

    jobs = [partial(copy, batch, next(slot) % concurrency) for batch in batches]
    try:
        return run_concurrently(jobs, concurrency)
    finally:
        for connection in connections:
            connection.close()


def count_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT count(*) FROM outcome_events").fetchone()
    return int(row[0]) if row else 0


def phase_profile(database_url: str, batches: list[list[Row]]) -> dict[str, float]:
    """Milliseconds per batch of each step of the API handler, run in-process."""
    from pydantic import TypeAdapter

    from atoll import audit, events
    from atoll.db import make_engine, make_session_factory, unit_of_work
    from atoll.web.api.events import OutcomeBatch

    adapter = TypeAdapter(OutcomeBatch)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    spent = dict.fromkeys(("JSON parse", "validation", "INSERT (+commit)", "audit row (+commit)"), 0.0)
    for batch in batches:
        body = orjson.dumps({"events": batch})
        started = time.perf_counter()
        document = json.loads(body)  # what FastAPI does with the body
        parsed = time.perf_counter()
        rows = adapter.validate_python(document)["events"]
        validated = time.perf_counter()
        with unit_of_work(factory) as session:
            events.ingest_outcomes(session, rows)
        inserted = time.perf_counter()
        with unit_of_work(factory) as session:
            audit.record(session, actor=None, action="events.ingest_outcomes", target_type="event_log",
                         target_id="outcome_events", summary={"inserted": len(rows)})  # fmt: skip
        audited = time.perf_counter()
        for key, seconds in zip(
            spent,
            (parsed - started, validated - parsed, inserted - validated, audited - inserted),
            strict=True,
        ):
            spent[key] += seconds * 1000 / len(batches)
    engine.dispose()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args()
    total = args.batches * args.batch_size
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with fresh_database(postgres_admin_url()) as database_url:
        from atoll import migrate

        migrate.upgrade(database_url)
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        token = make_token(database_url)
        work = Path(tempfile.mkdtemp(prefix="atoll-bench-ingest-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATOLL_")}
        env.update(ATOLL_DATABASE_URL=database_url, ATOLL_DATA_DIR=str(work), ATOLL_LOG_LEVEL="WARNING")
        port = 8611
        server = subprocess.Popen(
            [sys.executable, "-m", "atoll", "server", "--port", str(port), "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/healthz")
            warm = make_batches(args.concurrency * 2, args.batch_size, "warm")
            through_api(base, token, [orjson.dumps({"events": b}) for b in warm], args.concurrency)
            batches = make_batches(args.batches, args.batch_size, "api")
            bodies = [orjson.dumps({"events": b}) for b in batches]
            api_seconds = through_api(base, token, bodies, args.concurrency)
            stored = count_rows(dsn) - len(warm) * args.batch_size
            assert stored == total, f"API stored {stored} rows, expected {total}"
            resend = httpx.post(
                f"{base}/api/v1/events/outcomes", content=bodies[0], timeout=60,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ).json()  # fmt: skip
            assert resend["inserted"] == 0, resend
            assert resend["duplicates"] == args.batch_size, resend
        finally:
            server.terminate()
            server.wait(timeout=30)
        copy_seconds = through_copy(
            dsn, make_batches(args.batches, args.batch_size, "copy"), args.concurrency
        )
        profile = phase_profile(database_url, make_batches(20, args.batch_size, "profile"))
    api_rate, copy_rate = total / api_seconds, total / copy_seconds
    print(f"\n{total:,} events in batches of {args.batch_size:,}, {args.concurrency} concurrent clients")
    print(f"  Atoll API ({args.workers} uvicorn workers): {api_rate:10,.0f} events/s  ({api_seconds:.2f} s)"
          f"   goal >= 50,000/s")  # fmt: skip
    print(f"  psycopg COPY (anchor):        {copy_rate:10,.0f} events/s  ({copy_seconds:.2f} s)")
    print(f"  ratio API / COPY: {api_rate / copy_rate:.2f}x   (resend of a batch: 0 inserted, idempotent)")
    print("\none batch of 1,000 in the API handler (in-process, ms):")
    for phase, ms in profile.items():
        print(f"  {phase:22} {ms:7.2f}")


if __name__ == "__main__":
    main()
