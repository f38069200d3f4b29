"""Outcome ingestion after the speed work (one INSERT ... ON CONFLICT per batch, TypedDict
validation): defaults, late events, duplicates within and across batches, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from atoll.db import unit_of_work, utcnow
from atoll.events import OutcomeEvent, ingest_outcomes
from atoll.web.api.events import MAX_BATCH

from .conftest import Caller
from .experimenting import definition, serve

URL = "/api/v1/events/outcomes"


def _stored(factory: sessionmaker[Session]) -> dict[str, OutcomeEvent]:
    with unit_of_work(factory) as session:
        return {e.event_id: e for e in session.scalars(select(OutcomeEvent))}


class TestStoredRows:
    def test_defaults_late_events_and_experiment_are_stored(
        self, client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        serve(session_factory, "shop", {"blue": 100, "green": 0})
        metrics = [{"name": "revenue", "type": "mean", "event": "revenue"}]
        body = definition("checkout", "shop", {"blue": 50, "green": 50}, "blue", metrics=metrics)
        assert client.post("/api/v1/experiments", headers=admin.headers, json=body).status_code == 201
        before = utcnow()
        late = "2026-10-01T08:30:00.250+02:00"
        batch = [
            {"event_id": "plain", "unit_id": "u1", "metric": "purchase"},
            {"event_id": "late", "unit_id": "u2", "metric": "revenue", "value": 12.5, "ts": late,
             "experiment": "checkout"},
            {"event_id": "int-value", "unit_id": "u3", "metric": "revenue", "value": 3, "ts": None},
        ]  # fmt: skip
        response = client.post(URL, headers=admin.headers, json={"events": batch})
        assert response.json() == {"received": 3, "inserted": 3, "duplicates": 0}
        rows = _stored(session_factory)
        assert rows["plain"].value == 1.0 and rows["plain"].experiment is None
        assert before <= rows["plain"].ts <= utcnow()
        assert rows["late"].ts == datetime(2026, 10, 1, 6, 30, 0, 250_000, tzinfo=UTC)
        assert (rows["late"].value, rows["late"].experiment) == (12.5, "checkout")
        assert rows["int-value"].value == 3.0 and before <= rows["int-value"].ts
        assert all(before <= r.received_at <= utcnow() for r in rows.values())

    def test_a_duplicate_within_a_batch_counts_once_and_the_first_wins(
        self, session_factory: sessionmaker[Session]
    ) -> None:
        ts = datetime(2026, 11, 1, tzinfo=UTC)
        rows = [
            {"event_id": "d", "unit_id": "u", "metric": "m", "value": 1.0, "ts": ts},
            {"event_id": "d", "unit_id": "u", "metric": "m", "value": 9.0, "ts": ts},
            {"event_id": "e", "unit_id": "u", "metric": "m", "value": 2.0, "ts": ts},
        ]
        with unit_of_work(session_factory) as session:
            assert ingest_outcomes(session, rows) == 2
        with unit_of_work(session_factory) as session:
            assert ingest_outcomes(session, [*rows, {**rows[0], "event_id": "f"}]) == 1
        stored = _stored(session_factory)
        assert stored["d"].value == 1.0 and set(stored) == {"d", "e", "f"}

    def test_a_naive_datetime_is_refused(self, session_factory: sessionmaker[Session]) -> None:
        naive = {"event_id": "n", "unit_id": "u", "metric": "m", "ts": datetime(2026, 11, 1)}
        with pytest.raises(ValueError, match="naive datetime"), unit_of_work(session_factory) as session:
            ingest_outcomes(session, [naive])
        assert _stored(session_factory) == {}


class TestBadInput:
    @pytest.mark.parametrize(
        ("event", "field", "words"),
        [
            ({"unit_id": "u", "metric": "m"}, "events.0.event_id", "required"),
            ({"event_id": "", "unit_id": "u", "metric": "m"}, "events.0.event_id", "at least 1"),
            ({"event_id": "x", "unit_id": "u" * 129, "metric": "m"}, "events.0.unit_id", "at most 128"),
            ({"event_id": "x", "unit_id": "u", "metric": "m", "value": "2"}, "events.0.value", "valid number"),
            ({"event_id": "x", "unit_id": "u", "metric": "m", "ts": 1767225600}, "events.0.ts", "ISO 8601"),
            ({"event_id": "x", "unit_id": "u", "metric": "m", "ts": "2026-13-01T00:00:00Z"}, "events.0.ts", ""),
            ({"event_id": "x", "unit_id": "u", "metric": "m", "colour": "red"}, "events.0.colour", "not permitted"),
        ],
    )  # fmt: skip
    def test_names_the_field_and_stores_nothing(
        self,
        client: TestClient,
        admin: Caller,
        session_factory: sessionmaker[Session],
        event: dict[str, object],
        field: str,
        words: str,
    ) -> None:
        good = {"event_id": "good", "unit_id": "u", "metric": "m"}
        response = client.post(URL, headers=admin.headers, json={"events": [event, good]})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["errors"][0]["field"] == field
        assert words in response.json()["detail"]
        assert _stored(session_factory) == {}

    def test_a_non_finite_value_is_refused(self, client: TestClient, admin: Caller) -> None:
        body = b'{"events": [{"event_id": "x", "unit_id": "u", "metric": "m", "value": NaN}]}'
        headers = {**admin.headers, "content-type": "application/json"}
        response = client.post(URL, headers=headers, content=body)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "events.0.value"

    def test_an_oversized_batch_is_refused(self, client: TestClient, admin: Caller) -> None:
        events = [{"event_id": f"e{i}", "unit_id": "u", "metric": "m"} for i in range(MAX_BATCH + 1)]
        response = client.post(URL, headers=admin.headers, json={"events": events})
        assert response.status_code in (413, 422)
        assert "events" in response.json()["detail"]

    def test_the_batch_is_documented_in_openapi(self, client: TestClient) -> None:
        schema = client.get("/openapi.json").json()
        event = schema["components"]["schemas"]["OutcomeIn"]
        assert set(event["required"]) == {"event_id", "unit_id", "metric"}
        assert event["additionalProperties"] is False
