"""The experiment sums in SQL (abtest/sums.py) against a hand computation on the same rows.

Runs on SQLite and, with ATOLL_TEST_DB=postgresql, on PostgreSQL. The rows are generated
(seeded) with every case the SQL must get right: late outcomes (after the attribution
window), outcomes before the exposure, duplicate outcome event ids (ingested through the
real idempotent ingestion), duplicate exposures of a unit in the same arm, a unit exposed
under two arms (its first exposure wins), units never exposed, another split's exposures,
and an outcome exactly on the window's edge. Exposures are written straight into
exposure_events (the router writes them in production).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from atoll.abtest.stats.schemas import ArmData
from atoll.abtest.sums import (
    MetricQuery,
    arm_sums,
    exposures_per_arm,
    unexposed_outcomes,
    units_in_several_arms,
)
from atoll.db import unit_of_work
from atoll.events import ExposureEvent, ingest_outcomes

SPLIT = "salt-exp-1"
ARMS = ("control", "treatment")
WINDOW = 3600.0
PRE_PERIOD = 7 * 86400.0
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclass
class Rows:
    exposures: list[dict[str, object]] = field(default_factory=list)
    outcomes: list[dict[str, object]] = field(default_factory=list)


def generate(seed: int = 7, units: int = 300) -> Rows:
    rng = random.Random(seed)
    rows = Rows()
    event_number = 0

    def outcome(unit: str, metric: str, ts: datetime, value: float) -> None:
        nonlocal event_number
        event_number += 1
        event = {
            "event_id": f"ev-{event_number}",
            "unit_id": unit,
            "metric": metric,
            "value": value,
            "ts": ts,
        }
        rows.outcomes.append(event)
        if rng.random() < 0.1:  # a client resend: same event id, counted once
            rows.outcomes.append(dict(event))

    for i in range(units):
        unit = f"u{i}"
        exposed = T0 + timedelta(seconds=rng.randrange(0, 86400), microseconds=rng.randrange(10**6))
        never_exposed = i % 25 == 0
        if not never_exposed:
            arm = ARMS[i % 2]
            rows.exposures.append(
                {"ts": exposed, "split": SPLIT, "deployment": arm, "unit_id": unit, "endpoint": "recs"}
            )
            if i % 7 == 0:  # a second router replica: the same arm again, later
                later = exposed + timedelta(seconds=5)
                rows.exposures.append(
                    {"ts": later, "split": SPLIT, "deployment": arm, "unit_id": unit, "endpoint": "recs"}
                )
            if i % 11 == 0:  # a weight change moved it: another arm later; the first still counts
                other = ARMS[(i + 1) % 2]
                later = exposed + timedelta(minutes=3)
                rows.exposures.append(
                    {"ts": later, "split": SPLIT, "deployment": other, "unit_id": unit, "endpoint": "recs"}
                )
            if i % 13 == 0:  # the same unit in another experiment's split
                rows.exposures.append(
                    {
                        "ts": exposed,
                        "split": "other-salt",
                        "deployment": "x",
                        "unit_id": unit,
                        "endpoint": "recs",
                    }
                )
        for _ in range(rng.randrange(0, 4)):
            offset = rng.uniform(-2 * WINDOW, 2 * WINDOW)  # before, inside and after the window
            outcome(unit, "purchase", exposed + timedelta(seconds=offset), 1.0)
            outcome(unit, "revenue", exposed + timedelta(seconds=offset), round(rng.uniform(1, 80), 2))
        for _ in range(rng.randrange(0, 5)):
            offset = rng.uniform(0, 1.5 * WINDOW)
            outcome(unit, "impression", exposed + timedelta(seconds=offset), 1.0)
            if rng.random() < 0.3:
                outcome(unit, "click", exposed + timedelta(seconds=offset + 1), 1.0)
        for _ in range(rng.randrange(0, 3)):  # pre-period revenue (and some older than it)
            offset = rng.uniform(-PRE_PERIOD * 1.3, 0)
            outcome(unit, "revenue", exposed + timedelta(seconds=offset), round(rng.uniform(1, 80), 2))
        if i == 3:  # exactly on the window's edge: inside
            outcome(unit, "purchase", exposed + timedelta(seconds=WINDOW), 1.0)
    return rows


def load(factory: sessionmaker[Session], rows: Rows) -> None:
    with unit_of_work(factory) as session:
        session.execute(insert(ExposureEvent), rows.exposures)
        ingest_outcomes(session, rows.outcomes)


def first_exposures(
    rows: Rows, until: datetime | None = None, since: datetime | None = None
) -> dict[str, tuple[str, datetime]]:
    first: dict[str, tuple[str, datetime]] = {}
    for e in rows.exposures:  # generation order: ties cannot happen here
        if e["split"] != SPLIT or (until is not None and e["ts"] > until):  # type: ignore[operator]
            continue
        unit, ts = str(e["unit_id"]), e["ts"]
        assert isinstance(ts, datetime)
        if unit not in first or ts < first[unit][1]:
            first[unit] = (str(e["deployment"]), ts)
    return {unit: first[unit] for unit in first if since is None or first[unit][1] >= since}


def hand_sums(
    rows: Rows, metric: MetricQuery, until: datetime | None = None, since: datetime | None = None
) -> dict[str, ArmData]:
    """The same sums by plain Python loops over the distinct events."""
    distinct = {str(o["event_id"]): o for o in rows.outcomes}.values()
    by_unit: dict[str, list[dict[str, object]]] = defaultdict(list)
    for o in distinct:
        by_unit[str(o["unit_id"])].append(o)
    acc = {arm: [0, 0.0, 0.0, 0.0, 0.0, 0.0] for arm in ARMS}
    for unit, (arm, exposed) in first_exposures(rows, until, since).items():
        y = x = 0.0
        converted = False
        for o in by_unit[unit]:
            ts = o["ts"]
            assert isinstance(ts, datetime)
            value = float(o["value"])  # type: ignore[arg-type]
            inside = exposed <= ts <= exposed + timedelta(seconds=WINDOW) and (until is None or ts <= until)
            if o["metric"] == metric.event and inside:
                y += value
                converted = True
            if o["metric"] == metric.denominator_event and inside:
                x += value
            pre = metric.pre_period_seconds or 0.0
            if o["metric"] == metric.covariate_event and exposed - timedelta(seconds=pre) <= ts < exposed:
                x += value
        if metric.type == "binary":
            y = 1.0 if converted else 0.0
        sums = acc[arm]
        for index, value in enumerate((1, y, y * y, x, x * x, x * y)):
            sums[index] += value
    result = {}
    for arm, (n, s, ss, sx, sxx, sxy) in acc.items():
        extra: dict[str, float] = {}
        if metric.type == "ratio":
            extra = {"denominator_sum": sx, "denominator_sum_squares": sxx, "sum_products": sxy}
        elif metric.covariate_event:
            extra = {"pre_sum": sx, "pre_sum_squares": sxx, "sum_products": sxy}
        result[arm] = ArmData(n=int(n), sum=s, sum_squares=ss, **extra)
    return result


def assert_close(got: dict[str, ArmData], expected: dict[str, ArmData]) -> None:
    assert got.keys() == expected.keys()
    for arm in expected:
        g, e = got[arm].model_dump(), expected[arm].model_dump()
        assert g["n"] == e["n"], arm
        for key, value in e.items():
            expected_value = value if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)
            assert g[key] == expected_value, f"{arm}.{key}"


METRICS = {
    "binary": MetricQuery(type="binary", event="purchase"),
    "mean": MetricQuery(type="mean", event="revenue"),
    "ratio": MetricQuery(type="ratio", event="click", denominator_event="impression"),
    "cuped on itself": MetricQuery(
        type="mean", event="revenue", covariate_event="revenue", pre_period_seconds=PRE_PERIOD
    ),
    "binary + cuped": MetricQuery(
        type="binary", event="purchase", covariate_event="revenue", pre_period_seconds=PRE_PERIOD
    ),
}


@pytest.fixture
def rows(session_factory: sessionmaker[Session]) -> Rows:
    generated = generate()
    load(session_factory, generated)
    return generated


class TestArmSums:
    @pytest.mark.parametrize("name", list(METRICS))
    def test_sql_sums_equal_a_hand_computation(
        self, name: str, rows: Rows, session_factory: sessionmaker[Session]
    ) -> None:
        metric = METRICS[name]
        with unit_of_work(session_factory) as session:
            got = arm_sums(session, split=SPLIT, arms=ARMS, metric=metric, attribution_seconds=WINDOW)
        expected = hand_sums(rows, metric)
        assert_close(got, expected)
        assert expected["control"].sum > 0 and expected["treatment"].sum > 0, "the data must exercise y"

    def test_until_cuts_exposures_and_outcomes(
        self, rows: Rows, session_factory: sessionmaker[Session]
    ) -> None:
        until = T0 + timedelta(hours=12)
        metric = METRICS["mean"]
        with unit_of_work(session_factory) as session:
            got = arm_sums(
                session, split=SPLIT, arms=ARMS, metric=metric, attribution_seconds=WINDOW, until=until
            )
        expected = hand_sums(rows, metric, until)
        assert_close(got, expected)
        assert expected["control"].n < hand_sums(rows, metric)["control"].n

    def test_since_keeps_the_units_first_exposed_after_it(
        self, rows: Rows, session_factory: sessionmaker[Session]
    ) -> None:
        since, metric = T0 + timedelta(hours=12), METRICS["binary"]
        with unit_of_work(session_factory) as session:
            got = arm_sums(
                session, split=SPLIT, arms=ARMS, metric=metric, attribution_seconds=WINDOW, since=since
            )
            per_arm = exposures_per_arm(session, split=SPLIT, since=since)
        expected = hand_sums(rows, metric, since=since)
        assert_close(got, expected)
        assert per_arm == {arm: data.n for arm, data in expected.items()}
        assert 0 < expected["control"].n < hand_sums(rows, metric)["control"].n

    def test_each_unit_counts_once_in_its_first_arm(
        self, rows: Rows, session_factory: sessionmaker[Session]
    ) -> None:
        first = first_exposures(rows)
        crossed = {
            str(e["unit_id"])
            for e in rows.exposures
            if e["split"] == SPLIT and first[str(e["unit_id"])][0] != e["deployment"]
        }
        with unit_of_work(session_factory) as session:
            per_arm = exposures_per_arm(session, split=SPLIT)
            several = units_in_several_arms(session, split=SPLIT)
            sums = arm_sums(
                session, split=SPLIT, arms=ARMS, metric=METRICS["binary"], attribution_seconds=WINDOW
            )
        assert per_arm == {arm: sum(1 for a, _ in first.values() if a == arm) for arm in ARMS}
        assert sum(per_arm.values()) == len(first) == 288  # 300 units, 12 never exposed
        assert several == len(crossed) > 0
        assert {arm: data.n for arm, data in sums.items()} == per_arm

    def test_the_window_edge_is_inside_and_a_late_event_outside(
        self, session_factory: sessionmaker[Session]
    ) -> None:
        exposed = T0 + timedelta(microseconds=123_456)
        edge, late = exposed + timedelta(seconds=WINDOW), exposed + timedelta(seconds=WINDOW + 0.002)
        rows = Rows(
            exposures=[{"ts": exposed, "split": SPLIT, "deployment": "control", "unit_id": "a", "endpoint": "recs"},
                       {"ts": exposed, "split": SPLIT, "deployment": "control", "unit_id": "b", "endpoint": "recs"}],
            outcomes=[{"event_id": "edge", "unit_id": "a", "metric": "revenue", "value": 2.0, "ts": edge},
                      {"event_id": "late", "unit_id": "b", "metric": "revenue", "value": 5.0, "ts": late}],
        )  # fmt: skip
        load(session_factory, rows)
        with unit_of_work(session_factory) as session:
            got = arm_sums(
                session, split=SPLIT, arms=ARMS, metric=METRICS["mean"], attribution_seconds=WINDOW
            )
        assert got["control"] == ArmData(n=2, sum=2.0, sum_squares=4.0)
        assert got["treatment"] == ArmData(n=0, sum=0.0, sum_squares=0.0)

    def test_a_unit_first_exposed_outside_the_arms_is_left_out(
        self, session_factory: sessionmaker[Session]
    ) -> None:
        rows = Rows(
            exposures=[{"ts": T0, "split": SPLIT, "deployment": "retired", "unit_id": "a", "endpoint": "recs"},
                       {"ts": T0 + timedelta(seconds=1), "split": SPLIT, "deployment": "control", "unit_id": "a", "endpoint": "recs"}],
        )  # fmt: skip
        load(session_factory, rows)
        with unit_of_work(session_factory) as session:
            got = arm_sums(
                session, split=SPLIT, arms=ARMS, metric=METRICS["binary"], attribution_seconds=WINDOW
            )
        assert got["control"].n == 0


class TestUnexposedOutcomes:
    def test_counts_the_events_of_units_never_exposed(
        self, rows: Rows, session_factory: sessionmaker[Session]
    ) -> None:
        exposed_units = set(first_exposures(rows))
        distinct = {str(o["event_id"]): o for o in rows.outcomes}.values()
        since = T0 - timedelta(days=30)
        expected = sum(
            1
            for o in distinct
            if o["unit_id"] not in exposed_units and o["metric"] in ("purchase", "revenue")
        )
        with unit_of_work(session_factory) as session:
            got = unexposed_outcomes(session, split=SPLIT, events=["purchase", "revenue"], since=since)
            later = unexposed_outcomes(
                session, split=SPLIT, events=["purchase"], since=T0 + timedelta(days=5)
            )
        assert got == expected > 0
        assert later == 0


class TestMetricQuery:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"type": "ratio", "event": "click"}, "denominator_event"),
            ({"type": "mean", "event": "r", "denominator_event": "d"}, "denominator_event"),
            ({"type": "mean", "event": "r", "covariate_event": "r"}, "pre_period_seconds"),
            (
                {"type": "ratio", "event": "c", "denominator_event": "i", "covariate_event": "c",
                 "pre_period_seconds": 60.0},
                "covariate_event",
            ),
        ],
    )  # fmt: skip
    def test_inconsistent_queries_name_the_field(self, kwargs: dict[str, object], field: str) -> None:
        with pytest.raises(ValueError, match=f"^{field}:"):
            MetricQuery(**kwargs)  # type: ignore[arg-type]
