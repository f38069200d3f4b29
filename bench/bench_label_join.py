"""Monitor labels: joining a window's predictions to their outcome events, on PostgreSQL.

Atoll (monitoring/labels.py): one range read of the label metric's events in
[window start, window end + attribution), then pandas `merge_asof(by=unit, forward)`.
Anchor, in the same run on the same tables: the join written in SQL, a LATERAL subquery per
prediction that takes the unit's first event of the metric in [ts, ts + attribution)
(served by the `(metric, unit_id, ts)` index), returning one label per prediction.
Both answers are compared row by row. The window's predictions are read the same way on
both sides (not timed): the figure is the join alone.

Usage: uv run python bench/bench_label_join.py [--predictions 200000] [--units 50000]
(PostgreSQL: $ATOLL_BENCH_POSTGRES_URL, default the URL `scripts/postgres.sh start` prints.)
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_outcome_ingest import fresh_database, postgres_admin_url

T0 = datetime(2026, 11, 2, tzinfo=UTC)
WINDOW = timedelta(hours=1)
ATTRIBUTION = timedelta(days=1)

ANCHOR_SQL = text(
    """
    SELECT p.id, o.value
    FROM inference_events p
    LEFT JOIN LATERAL (
        SELECT e.value FROM outcome_events e
        WHERE e.metric = :metric AND e.unit_id = p.unit_id
          AND e.ts >= p.ts AND e.ts < p.ts + make_interval(secs => :attribution)
        ORDER BY e.ts, e.id LIMIT 1
    ) o ON true
    WHERE p.endpoint = 'bench' AND p.ts >= :start AND p.ts < :end
    ORDER BY p.id
    """
)


def populate(database_url: str, predictions: int, units: int) -> None:
    from atoll.db import make_engine, make_session_factory, unit_of_work
    from atoll.events import InferenceEvent, OutcomeEvent

    rng = np.random.default_rng(0)
    unit_of = rng.integers(0, units, predictions)
    at = rng.uniform(0, WINDOW.total_seconds(), predictions)
    rows = [
        {
            "ts": T0 + timedelta(seconds=float(at[i])),
            "endpoint": "bench",
            "deployment": "d",
            "status": 200,
            "unit_id": f"user-{unit_of[i]}",
            "features": {"x": float(i)},
            "prediction": {"value": int(i % 2), "rows": 1},
        }
        for i in range(predictions)
    ]
    # Labels for 80% of the units at a random delay of up to 30 h (some land past the
    # attribution window), plus as many events of another metric.
    labelled = rng.permutation(units)[: int(units * 0.8)]
    delay = rng.uniform(0, 30 * 3600, labelled.size)
    outcomes = [
        {
            "event_id": f"{metric}-{u}",
            "ts": T0 + timedelta(seconds=float(d)),
            "unit_id": f"user-{u}",
            "metric": metric,
            "value": float(u % 2),
        }
        for metric in ("is_fraud", "other")
        for u, d in zip(labelled.tolist(), delay.tolist(), strict=True)
    ]
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    for table, batch in ((InferenceEvent, rows), (OutcomeEvent, outcomes)):
        for start in range(0, len(batch), 20_000):
            with unit_of_work(factory) as session:
                session.execute(insert(table), batch[start : start + 20_000])
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--predictions", type=int, default=200_000)
    parser.add_argument("--units", type=int, default=50_000)
    args = parser.parse_args()

    from atoll import migrate
    from atoll.db import make_engine, make_session_factory
    from atoll.monitoring.labels import join_labels, read_outcomes
    from atoll.monitoring.windows import load_window

    with fresh_database(postgres_admin_url()) as url:
        migrate.upgrade(url)
        populate(url, args.predictions, args.units)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        end = T0 + WINDOW
        with factory() as session:
            window = load_window(session, endpoint="bench", start=T0, end=end)
            started = time.perf_counter()
            outcomes = read_outcomes(session, metric="is_fraud", start=T0, end=end, attribution=ATTRIBUTION)
            read_s = time.perf_counter() - started
            labels = join_labels(window.served_by[["ts", "unit_id"]], outcomes, ATTRIBUTION)
            atoll_s = time.perf_counter() - started
            started = time.perf_counter()
            anchor = session.execute(
                ANCHOR_SQL,
                {"metric": "is_fraud", "attribution": ATTRIBUTION.total_seconds(), "start": T0, "end": end},
            ).all()
            anchor_s = time.perf_counter() - started
        engine.dispose()
    expected = pd.Series([np.nan if v is None else v for _, v in anchor], dtype="float64")
    same = bool(
        ((labels.to_numpy() == expected.to_numpy()) | (labels.isna() & expected.isna()).to_numpy()).all()
    )
    print(
        f"{len(window):,} predictions, {len(outcomes):,} outcome events read, {labels.notna().sum():,} labelled"
    )
    print(f"anchor  SQL LATERAL first-event join : {anchor_s:7.3f} s")
    print(
        f"atoll   range read + merge_asof      : {atoll_s:7.3f} s (read {read_s:.3f} s)  ratio {anchor_s / atoll_s:.1f}x"
    )
    print(f"labels identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
