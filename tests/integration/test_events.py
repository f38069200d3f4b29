"""Outcome ingestion (idempotent) and the batched event writer (never blocks, counts drops)."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.auth.policy import Role, Scope
from atoll.db import make_session_factory, unit_of_work
from atoll.events import BatchWriter, InferenceEvent, OutcomeEvent

from .conftest import Caller, MakeCaller


def _outcome(event_id: str, value: float = 1.0) -> dict[str, object]:
    return {"event_id": event_id, "unit_id": f"u-{event_id}", "metric": "purchase", "value": value}


def _count(factory: sessionmaker[Session], model: type[OutcomeEvent] | type[InferenceEvent]) -> int:
    with unit_of_work(factory) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


class TestOutcomeIngestion:
    def test_resending_a_batch_counts_nothing_twice(
        self, client: TestClient, make_caller: MakeCaller, session_factory: sessionmaker[Session]
    ) -> None:
        service = make_caller("checkout-svc", Role.engineer, scopes=[Scope.ingest])
        batch = {"events": [_outcome("e1"), _outcome("e2"), _outcome("e2")]}
        first = client.post("/api/v1/events/outcomes", headers=service.headers, json=batch)
        assert first.status_code == 200
        assert first.json() == {"received": 3, "inserted": 2, "duplicates": 1}
        again = client.post("/api/v1/events/outcomes", headers=service.headers, json=batch)
        assert again.json() == {"received": 3, "inserted": 0, "duplicates": 3}
        assert _count(session_factory, OutcomeEvent) == 2

    def test_ingestion_is_audited_once_per_batch(self, client: TestClient, admin: Caller) -> None:
        client.post("/api/v1/events/outcomes", headers=admin.headers, json={"events": [_outcome("a")]})
        audit = client.get("/api/v1/audit", headers=admin.headers, params={"action": "events."}).json()
        assert audit["total"] == 1
        assert audit["items"][0]["summary"]["inserted"] == 1

    def test_invalid_events_name_the_field_and_store_nothing(
        self, client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        bad = {
            "events": [
                _outcome("ok"),
                {"event_id": "x", "unit_id": "u", "metric": "m", "ts": "2026-01-01T00:00:00"},
            ]
        }
        response = client.post("/api/v1/events/outcomes", headers=admin.headers, json=bad)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "events.1.ts"
        assert "timezone" in response.json()["detail"]
        assert _count(session_factory, OutcomeEvent) == 0

    def test_empty_batch_is_rejected(self, client: TestClient, admin: Caller) -> None:
        response = client.post("/api/v1/events/outcomes", headers=admin.headers, json={"events": []})
        assert response.status_code == 422

    def test_read_only_token_cannot_ingest(self, client: TestClient, make_caller: MakeCaller) -> None:
        viewer = make_caller("viewer", Role.viewer)
        response = client.post(
            "/api/v1/events/outcomes", headers=viewer.headers, json={"events": [_outcome("z")]}
        )
        assert response.status_code == 403


class TestBatchWriter:
    def test_writes_in_batches(self, session_factory: sessionmaker[Session]) -> None:
        writer = BatchWriter(session_factory, InferenceEvent, max_batch=100, flush_seconds=0.05)
        for i in range(250):
            writer.submit({"endpoint": "recs", "latency_ms": float(i), "status": 200})
        writer.close()
        assert writer.written == 250 and writer.dropped == 0
        assert 3 <= writer.batches <= 10
        assert _count(session_factory, InferenceEvent) == 250

    def test_a_database_outage_drops_and_counts_without_blocking(self, tmp_path: object) -> None:
        broken = make_session_factory(create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none"))
        writer = BatchWriter(broken, InferenceEvent, max_batch=50, flush_seconds=0.05)
        started = time.perf_counter()
        for _ in range(500):
            writer.submit({"endpoint": "recs", "status": 200})
        assert time.perf_counter() - started < 0.5, "submit must never wait on the database"
        writer.close()
        assert writer.written == 0 and writer.dropped == 500

    def test_a_full_buffer_drops_and_counts(self, session_factory: sessionmaker[Session]) -> None:
        writer = BatchWriter(session_factory, InferenceEvent, capacity=10, flush_seconds=5)
        for _ in range(30):
            writer.submit({"endpoint": "recs", "status": 200})
        writer.close()
        assert writer.dropped >= 19
        assert writer.written + writer.dropped == 30
