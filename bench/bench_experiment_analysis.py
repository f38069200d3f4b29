"""Experiment analysis: `abtest.sums.arm_sums` in PostgreSQL vs pandas on an export of the rows.

Data (seeded, loaded with COPY into a fresh database): 1,000,000 units, one exposure each
in a two-arm split (plus 2% re-exposures under the other arm, which the first-exposure
rule must ignore), and 10,000,000 outcome events of the analysed metric, timed from an
hour before to two days after the unit's exposure (attribution window: one day).

Atoll: `arm_sums` end to end (one SQL statement, the ArmData built). Anchor, in the same
run: the same sums by pandas from `COPY ... TO STDOUT` exports of the same rows (export
and compute timed apart). The sums must agree. Goal: <= 2 s for Atoll.
Usage: uv run python bench/bench_experiment_analysis.py [--units 1000000] [--events 10000000]
(PostgreSQL: $ATOLL_BENCH_POSTGRES_URL, default the URL `scripts/postgres.sh start` prints.)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_outcome_ingest import fresh_database, postgres_admin_url

SPLIT, METRIC, ARMS = "bench-salt", "revenue", ("control", "treatment")
WINDOW_S = 86_400.0
T0_US = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1_000_000)
CHUNK = 1_000_000


def copy_frame(connection: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False)
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN (FORMAT csv)") as sink:
        sink.write(buffer.getvalue())


def load(dsn: str, units: int, events: int, seed: int) -> None:
    """COPY the rows into unlogged staging tables, then into the real tables (with their indexes)."""
    rng = np.random.default_rng(seed)
    exposed_us = T0_US + rng.integers(0, 7 * 86_400_000, units) * 1000  # whole milliseconds
    arm = rng.integers(0, 2, units)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE UNLOGGED TABLE stage_exposures (unit bigint, arm int, ts_us bigint)")
        connection.execute(
            "CREATE UNLOGGED TABLE stage_outcomes (id bigint, unit bigint, ts_us bigint, value float8)"
        )
        copy_frame(
            connection,
            "stage_exposures",
            pd.DataFrame({"unit": np.arange(units), "arm": arm, "ts": exposed_us}),
        )
        crossed = rng.choice(units, units // 50, replace=False)  # re-exposed later under the other arm
        later = pd.DataFrame(
            {"unit": crossed, "arm": 1 - arm[crossed], "ts": exposed_us[crossed] + 60_000_000}
        )
        copy_frame(connection, "stage_exposures", later)
        for start in range(0, events, CHUNK):
            size = min(CHUNK, events - start)
            unit = rng.integers(0, units, size)
            offset_ms = rng.integers(-3_600_000, 2 * 86_400_000, size)
            lift = np.where(arm[unit] == 1, 1.05, 1.0)
            value = np.round(rng.gamma(2.0, 10.0, size) * lift, 2)
            frame = pd.DataFrame(
                {
                    "id": np.arange(start, start + size),
                    "unit": unit,
                    "ts": exposed_us[unit] + offset_ms * 1000,
                    "v": value,
                }
            )
            copy_frame(connection, "stage_outcomes", frame)
        connection.execute(
            sql.SQL("""INSERT INTO exposure_events (ts, split, deployment, unit_id, endpoint)
            SELECT to_timestamp(ts_us / 1e6), {}, CASE arm WHEN 0 THEN 'control' ELSE 'treatment' END,
                   'user-' || unit, 'recs' FROM stage_exposures ORDER BY ts_us""").format(sql.Literal(SPLIT))
        )
        connection.execute(
            sql.SQL("""INSERT INTO outcome_events (event_id, ts, unit_id, metric, value, received_at)
            SELECT 'ev-' || id, to_timestamp(ts_us / 1e6), 'user-' || unit, {}, value, now()
            FROM stage_outcomes""").format(sql.Literal(METRIC))
        )
        connection.execute("DROP TABLE stage_exposures, stage_outcomes")
        connection.execute("VACUUM ANALYZE exposure_events")
        connection.execute("VACUUM ANALYZE outcome_events")


def atoll_sums(database_url: str) -> tuple[float, dict[str, tuple[float, ...]]]:
    from atoll.abtest.sums import MetricQuery, arm_sums
    from atoll.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    started = time.perf_counter()
    with unit_of_work(factory) as session:
        sums = arm_sums(session, split=SPLIT, arms=ARMS, metric=MetricQuery(type="mean", event=METRIC),
                        attribution_seconds=WINDOW_S)  # fmt: skip
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds, {arm: (d.n, d.sum, d.sum_squares) for arm, d in sums.items()}


def export(dsn: str) -> tuple[float, bytes, bytes]:
    started = time.perf_counter()
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        exposures, outcomes = io.BytesIO(), io.BytesIO()
        query = sql.SQL(
            "COPY (SELECT unit_id, deployment, (extract(epoch FROM ts) * 1000000)::bigint, id "
            "FROM exposure_events WHERE split = {}) TO STDOUT (FORMAT csv)"
        ).format(sql.Literal(SPLIT))
        with cursor.copy(query) as source:
            for block in source:
                exposures.write(block)
        query = sql.SQL(
            "COPY (SELECT unit_id, value, (extract(epoch FROM ts) * 1000000)::bigint "
            "FROM outcome_events WHERE metric = {}) TO STDOUT (FORMAT csv)"
        ).format(sql.Literal(METRIC))
        with cursor.copy(query) as source:
            for block in source:
                outcomes.write(block)
    return time.perf_counter() - started, exposures.getvalue(), outcomes.getvalue()


def pandas_sums(exposures_csv: bytes, outcomes_csv: bytes) -> tuple[float, dict[str, tuple[float, ...]]]:
    started = time.perf_counter()
    exposures = pd.read_csv(
        io.BytesIO(exposures_csv), names=["unit_id", "arm", "exposed_us", "id"], engine="pyarrow"
    )
    outcomes = pd.read_csv(io.BytesIO(outcomes_csv), names=["unit_id", "value", "ts_us"], engine="pyarrow")
    first = exposures.sort_values(["exposed_us", "id"]).drop_duplicates("unit_id")[
        ["unit_id", "arm", "exposed_us"]
    ]
    joined = outcomes.merge(first, on="unit_id")
    inside = joined[
        (joined.ts_us >= joined.exposed_us) & (joined.ts_us <= joined.exposed_us + int(WINDOW_S * 1e6))
    ]
    per_unit = inside.groupby("unit_id")["value"].sum()
    first = first.assign(y=first["unit_id"].map(per_unit).fillna(0.0))
    grouped = (
        first.assign(y2=first.y * first.y)
        .groupby("arm")
        .agg(n=("y", "size"), s=("y", "sum"), ss=("y2", "sum"))
    )
    seconds = time.perf_counter() - started
    return seconds, {arm: (int(r.n), float(r.s), float(r.ss)) for arm, r in grouped.iterrows()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with fresh_database(postgres_admin_url()) as database_url:
        from atoll import migrate

        migrate.upgrade(database_url)
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        started = time.perf_counter()
        load(dsn, args.units, args.events, args.seed)
        print(
            f"loaded {args.units:,} units, {args.events:,} outcome events in {time.perf_counter() - started:.0f} s"
        )
        runs = [atoll_sums(database_url) for _ in range(args.runs)]
        export_seconds, exposures_csv, outcomes_csv = export(dsn)
    pandas_seconds, expected = pandas_sums(exposures_csv, outcomes_csv)
    atoll_seconds, got = min(runs, key=lambda run: run[0])
    for arm in ARMS:
        n, total, squares = got[arm]
        assert n == expected[arm][0], (arm, got[arm], expected[arm])
        assert np.isclose(total, expected[arm][1], rtol=1e-9), (arm, got[arm], expected[arm])
        assert np.isclose(squares, expected[arm][2], rtol=1e-9), (arm, got[arm], expected[arm])
    print("sums agree:", {arm: f"n={v[0]:,} sum={v[1]:,.2f}" for arm, v in got.items()})
    print(f"\nAtoll arm_sums (PostgreSQL, one statement): {atoll_seconds:6.2f} s best of {args.runs} "
          f"({', '.join(f'{r[0]:.2f}' for r in runs)})   goal <= 2 s")  # fmt: skip
    print(f"pandas from an export:  export {export_seconds:6.2f} s + compute {pandas_seconds:6.2f} s "
          f"= {export_seconds + pandas_seconds:6.2f} s")  # fmt: skip
    print(
        f"ratio Atoll / pandas compute: {atoll_seconds / pandas_seconds:.2f}x; "
        f"Atoll / (export + compute): {atoll_seconds / (export_seconds + pandas_seconds):.2f}x"
    )


if __name__ == "__main__":
    main()
