"""Experiments through the API over a real database: definitions checked against the endpoint,
start and stop through the endpoint's split (salt, owner, history), nothing half-applied, and
the outcome ingestion's checks. Deployments are database rows (no model servers): the split
lives in the database; the router's part is covered by the end-to-end test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.abtest.models import Experiment
from atoll.abtest.stats import PowerRequest, power
from atoll.audit import AuditEvent
from atoll.db import unit_of_work, utcnow
from atoll.deployer import endpoints, states
from atoll.deployer.models import Deployment, EndpointChange
from atoll.events import OutcomeEvent

from .conftest import Caller
from .experimenting import definition, serve

API = "/api/v1/experiments"


@pytest.fixture
def shop(session_factory: sessionmaker[Session]) -> str:
    """Endpoint `shop`: blue serves everything, green is deployed and warm."""
    serve(session_factory, "shop", {"blue": 100, "green": 0})
    return "shop"


def _endpoint(factory: sessionmaker[Session], name: str) -> tuple[dict[str, int], str, str | None]:
    with unit_of_work(factory) as session:
        found = endpoints.get(session, name)
        return endpoints.weights(session, found), found.split_salt, found.traffic_owner


def _count(factory: sessionmaker[Session], model: Any) -> int:
    with unit_of_work(factory) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _create(client: TestClient, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    created = client.post(API, headers=caller.headers, json=body)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


class TestCreate:
    def test_a_valid_definition_is_a_draft_sized_by_the_power_calculator(
        self, client: TestClient, admin: Caller, shop: str, session_factory: sessionmaker[Session]
    ) -> None:
        body = definition("checkout-2", shop, {"blue": 50, "green": 50}, "blue", mde=0.1, baseline=0.1)
        created = _create(client, admin, body)
        expected = power(PowerRequest(metric_type="binary", baseline=0.1, mde=0.1)).n_per_arm
        assert created["state"] == "draft"
        assert created["planned_n_per_arm"] == expected
        assert created["promote_alias"] == "champion"
        assert _endpoint(session_factory, shop)[0] == {"blue": 100, "green": 0}  # a draft changes nothing
        with unit_of_work(session_factory) as session:
            audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "experiment.create")).all()
            assert [a.target_id for a in audit] == ["checkout-2"]
        listed = client.get(API, headers=admin.headers, params={"endpoint": shop}).json()
        assert [e["key"] for e in listed["items"]] == ["checkout-2"]

    @pytest.mark.parametrize(
        ("change", "field", "words"),
        [
            ({"arms": [("blue", 50, True), ("green", 40, False)]}, "arms", "sum to 90"),
            (
                {"arms": [("blue", 50, True), ("nowhere", 50, False)]},
                "arms.1.deployment",
                "no deployment named",
            ),
            (
                {"arms": [("blue", 50, True), ("red", 50, False)]},
                "arms.1.deployment",
                "not behind endpoint 'shop'",
            ),
            ({"arms": [("blue", 50, True), ("green", 50, True)]}, "arms", "exactly one arm is the control"),
            ({"arms": [("blue", 50, False), ("green", 50, False)]}, "arms", "exactly one arm is the control"),
            ({"endpoint": "nope"}, "endpoint", "no endpoint named 'nope'"),
            ({"promote_alias": "latest"}, "promote_alias", "reserved"),
        ],
    )
    def test_a_bad_definition_is_422_naming_the_field_and_writes_nothing(
        self,
        client: TestClient,
        admin: Caller,
        shop: str,
        session_factory: sessionmaker[Session],
        change: dict[str, Any],
        field: str,
        words: str,
    ) -> None:
        serve(session_factory, "other", {"red": 100})
        body = definition("bad", shop, {"blue": 50, "green": 50}, "blue")
        if "arms" in change:
            body["arms"] = [{"deployment": d, "weight": w, "control": c} for d, w, c in change.pop("arms")]
        body.update(change)
        response = client.post(API, headers=admin.headers, json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field
        assert words in response.json()["detail"]
        assert _count(session_factory, Experiment) == 0

    @pytest.mark.parametrize(
        ("metric", "words"),
        [
            ({"name": "m", "type": "median"}, "metrics.0.type"),
            ({"name": "ctr", "type": "ratio", "numerator": "click"}, "denominator"),
            ({"name": "m", "type": "binary", "role": "secondary"}, "exactly one metric has role primary"),
        ],
    )
    def test_a_bad_metric_is_422_naming_it(
        self, client: TestClient, admin: Caller, shop: str, metric: dict[str, Any], words: str
    ) -> None:
        body = definition("bad", shop, {"blue": 50, "green": 50}, "blue", metrics=[metric])
        response = client.post(API, headers=admin.headers, json=body)
        assert response.status_code == 422
        assert words in response.text

    def test_a_second_definition_with_the_same_key_is_409(
        self, client: TestClient, admin: Caller, shop: str
    ) -> None:
        body = definition("twice", shop, {"blue": 50, "green": 50}, "blue")
        _create(client, admin, body)
        again = client.post(API, headers=admin.headers, json=body)
        assert again.status_code == 409
        assert again.json()["field"] == "key"

    def test_a_viewer_cannot_create(self, client: TestClient, make_caller: Any, shop: str) -> None:
        from atoll.auth.policy import Role

        viewer = make_caller("vera", Role.viewer)
        body = definition("nope", shop, {"blue": 50, "green": 50}, "blue")
        assert client.post(API, headers=viewer.headers, json=body).status_code == 403


class TestStartStop:
    def test_start_sets_the_split_with_its_salt_and_owner_and_stop_puts_both_back(
        self, client: TestClient, admin: Caller, shop: str, session_factory: sessionmaker[Session]
    ) -> None:
        _, salt_before, _ = _endpoint(session_factory, shop)
        created = _create(client, admin, definition("exp-a", shop, {"blue": 60, "green": 40}, "blue"))
        started = client.post(f"{API}/exp-a/start", headers=admin.headers)
        assert started.status_code == 200, started.text
        assert started.json()["state"] == "running"
        assert _endpoint(session_factory, shop) == (
            {"blue": 60, "green": 40},
            created["salt"],
            "experiment:exp-a",
        )
        assert created["salt"] != salt_before

        stopped = client.post(f"{API}/exp-a/stop", headers=admin.headers, json={"reason": "enough"})
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["state"] == "stopped"
        assert _endpoint(session_factory, shop) == ({"blue": 100, "green": 0}, salt_before, None)
        with unit_of_work(session_factory) as session:
            kinds = session.scalars(
                select(EndpointChange.kind).order_by(EndpointChange.id.desc()).limit(2)
            ).all()
            actions = set(session.scalars(select(AuditEvent.action)).all())
        assert list(kinds) == ["experiment", "experiment"]
        assert {"experiment.start", "experiment.stop", "endpoint.experiment"} <= actions

    def test_a_second_experiment_on_the_endpoint_is_409_and_changes_nothing(
        self, client: TestClient, admin: Caller, shop: str, session_factory: sessionmaker[Session]
    ) -> None:
        _create(client, admin, definition("first", shop, {"blue": 50, "green": 50}, "blue"))
        _create(client, admin, definition("second", shop, {"blue": 90, "green": 10}, "blue"))
        assert client.post(f"{API}/first/start", headers=admin.headers).status_code == 200
        before = _endpoint(session_factory, shop)
        refused = client.post(f"{API}/second/start", headers=admin.headers)
        assert refused.status_code == 409
        assert "'first' is already running" in refused.json()["detail"]
        assert _endpoint(session_factory, shop) == before
        assert client.get(f"{API}/second", headers=admin.headers).json()["state"] == "draft"

    def test_an_endpoint_held_by_a_canary_is_409_naming_it(
        self, client: TestClient, admin: Caller, shop: str, session_factory: sessionmaker[Session]
    ) -> None:
        _create(client, admin, definition("held", shop, {"blue": 50, "green": 50}, "blue"))
        with unit_of_work(session_factory) as session:
            endpoints.claim_traffic(session, name=shop, owner="canary:7")
        refused = client.post(f"{API}/held/start", headers=admin.headers)
        assert refused.status_code == 409
        assert refused.json()["owner"] == "canary:7"
        assert _endpoint(session_factory, shop)[0] == {"blue": 100, "green": 0}

    def test_an_arm_not_available_at_start_leaves_nothing_half_applied(
        self, client: TestClient, admin: Caller, shop: str, session_factory: sessionmaker[Session]
    ) -> None:
        _create(client, admin, definition("early", shop, {"blue": 50, "green": 50}, "blue"))
        before = _endpoint(session_factory, shop)
        with unit_of_work(session_factory) as session:
            green = session.scalars(select(Deployment).where(Deployment.name == "green")).one()
            green.state = states.PROGRESSING
        refused = client.post(f"{API}/early/start", headers=admin.headers)
        assert refused.status_code == 409
        assert "green" in refused.json()["detail"]
        assert _endpoint(session_factory, shop) == before  # no owner claimed, no salt, no weights
        assert client.get(f"{API}/early", headers=admin.headers).json()["state"] == "draft"

    def test_state_rules_are_409(self, client: TestClient, admin: Caller, shop: str) -> None:
        _create(client, admin, definition("rules", shop, {"blue": 50, "green": 50}, "blue"))
        assert client.post(f"{API}/rules/stop", headers=admin.headers).status_code == 409
        assert client.post(f"{API}/rules/start", headers=admin.headers).status_code == 200
        assert client.post(f"{API}/rules/start", headers=admin.headers).status_code == 409
        assert client.post(f"{API}/missing/start", headers=admin.headers).status_code == 404

    def test_stop_gives_the_control_everything_when_the_old_weights_no_longer_apply(
        self, client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        serve(session_factory, "news", {"old": 100, "ctl": 0, "cand": 0})
        _create(client, admin, definition("fallback", "news", {"ctl": 50, "cand": 50}, "ctl"))
        assert client.post(f"{API}/fallback/start", headers=admin.headers).status_code == 200
        with unit_of_work(session_factory) as session:
            old = session.scalars(select(Deployment).where(Deployment.name == "old")).one()
            old.state = states.FAILED
        assert client.post(f"{API}/fallback/stop", headers=admin.headers).status_code == 200
        assert _endpoint(session_factory, "news")[0] == {"old": 0, "ctl": 100, "cand": 0}


class TestOutcomeChecks:
    @pytest.fixture
    def running(self, client: TestClient, admin: Caller, shop: str) -> str:
        _create(client, admin, definition("live", shop, {"blue": 50, "green": 50}, "blue"))
        assert client.post(f"{API}/live/start", headers=admin.headers).status_code == 200
        return "live"

    def _send(self, client: TestClient, caller: Caller, *events: dict[str, Any]) -> Any:
        return client.post("/api/v1/events/outcomes", headers=caller.headers, json={"events": list(events)})

    def test_an_unknown_experiment_is_404_and_nothing_is_stored(
        self, client: TestClient, admin: Caller, running: str, session_factory: sessionmaker[Session]
    ) -> None:
        good = {"event_id": "a", "unit_id": "u1", "metric": "purchase", "experiment": running}
        bad = {"event_id": "b", "unit_id": "u1", "metric": "purchase", "experiment": "ghost"}
        response = self._send(client, admin, good, bad)
        assert response.status_code == 404
        assert response.json()["field"] == "events.1.experiment"
        assert "ghost" in response.json()["detail"]
        assert _count(session_factory, OutcomeEvent) == 0

    def test_a_metric_the_experiment_does_not_read_is_422_naming_it(
        self, client: TestClient, admin: Caller, running: str
    ) -> None:
        response = self._send(
            client, admin, {"event_id": "a", "unit_id": "u1", "metric": "clicks", "experiment": running}
        )
        assert response.status_code == 422
        assert response.json()["field"] == "events.0.metric"
        assert "'clicks'" in response.json()["detail"]
        assert "purchase" in response.json()["detail"]

    def test_late_events_are_accepted_and_future_ones_refused(
        self, client: TestClient, admin: Caller, running: str
    ) -> None:
        late = (utcnow() - timedelta(hours=2)).isoformat()
        ok = self._send(
            client,
            admin,
            {"event_id": "late", "unit_id": "u1", "metric": "purchase", "experiment": running, "ts": late},
        )
        assert ok.status_code == 200
        assert ok.json()["inserted"] == 1
        future = (utcnow() + timedelta(hours=1)).isoformat()
        refused = self._send(
            client, admin, {"event_id": "f", "unit_id": "u1", "metric": "purchase", "ts": future}
        )
        assert refused.status_code == 422
        assert refused.json()["field"] == "events.0.ts"

    def test_an_oversized_batch_is_refused(self, client: TestClient, admin: Caller) -> None:
        events = [{"event_id": str(i), "unit_id": "u", "metric": "purchase"} for i in range(10_001)]
        response = client.post("/api/v1/events/outcomes", headers=admin.headers, json={"events": events})
        assert response.status_code in (413, 422)
        assert response.headers["content-type"].startswith("application/problem+json")
