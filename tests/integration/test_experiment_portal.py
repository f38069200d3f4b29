"""The experiment pages through a signed-in portal session (CSRF included): the wizard proposes
a sample size from the power calculator and the endpoint's traffic, creates a draft; the page
starts it, shows live results with the SRM banner, forest plots and the cumulative-lift chart,
shows refusals without half-applying them; the endpoint page's fragment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.abtest import results, service
from atoll.abtest.stats import PowerRequest, power
from atoll.db import unit_of_work, utcnow
from atoll.deployer import endpoints
from atoll.deployer.models import Deployment
from atoll.events import InferenceEvent

from .conftest import Caller, sign_in
from .experimenting import definition, expose, outcomes, serve


@pytest.fixture
def portal(client: TestClient, admin: Caller, session_factory: sessionmaker[Session]) -> dict[str, str]:
    serve(session_factory, "shop", {"blue": 100, "green": 0})
    return sign_in(client, admin)


def test_the_wizard_proposes_a_size_and_a_duration_and_creates_a_draft(
    client: TestClient, portal: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    with unit_of_work(session_factory) as session:  # 2 days of traffic: 500 distinct units
        start = utcnow() - timedelta(days=2)
        rows = [
            {"ts": start + timedelta(minutes=i), "endpoint": "shop", "unit_id": f"u{i % 500}"}
            for i in range(2000)
        ]
        session.execute(insert(InferenceEvent), rows)
    page = client.get("/experiments/new")
    assert page.status_code == 200
    assert 'name="weight:blue"' in page.text
    assert 'name="weight:green"' in page.text

    form = {"endpoint": "shop", "metric_type": "binary", "baseline": "0.1", "mde": "0.1", "arm_count": "2"}
    plan = client.post("/experiments/new/plan", data=form, headers=portal)
    expected = power(PowerRequest(metric_type="binary", baseline=0.1, mde=0.1))
    assert f"{expected.n_per_arm:,} units per arm" in plan.text
    days = expected.n_total / 250 if expected.n_total else 0  # 500 units over 2 days
    assert f"about <strong>{days:.1f} days</strong>" in plan.text

    created = client.post(
        "/experiments/new",
        data={
            "key": "from-portal",
            "endpoint": "shop",
            "weight:blue": "50",
            "weight:green": "50",
            "control": "blue",
            "metric_name": "conversion",
            "metric_type": "binary",
            "metric_event": "purchase",
            "baseline": "0.1",
            "mde": "0.1",
        },
        headers=portal,
    )
    assert created.status_code == 204, created.text
    assert created.headers["HX-Redirect"] == "/experiments/from-portal"
    listed = client.get("/experiments")
    assert "from-portal" in listed.text
    with unit_of_work(session_factory) as session:
        assert service.get(session, "from-portal").planned_n_per_arm == expected.n_per_arm


def test_a_bad_wizard_form_shows_the_field_and_creates_nothing(
    client: TestClient, portal: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    data = {"key": "bad", "endpoint": "shop", "weight:blue": "50", "weight:green": "30", "control": "blue"}
    refused = client.post("/experiments/new", data={**data, "metric_name": "conversion"}, headers=portal)
    assert refused.status_code == 200
    assert "arms: the weights sum to 80" in refused.text
    assert client.get("/experiments/bad").status_code == 404


def test_the_page_starts_it_and_shows_live_results_and_refusals(
    client: TestClient, admin: Caller, portal: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    body = definition("page", "shop", {"blue": 50, "green": 50}, "blue")
    assert client.post("/api/v1/experiments", headers=admin.headers, json=body).status_code == 201
    assert client.post("/experiments/page/start", headers=portal).status_code == 204
    started = client.get("/experiments/page")
    assert 'data-testid="state">running' in started.text
    assert 'hx-trigger="load, every 10s"' in started.text

    with unit_of_work(session_factory) as session:
        experiment = service.get(session, "page")
        assert experiment.started_at is not None
        at = experiment.started_at + timedelta(seconds=1)
        units = {f"u{i}": ("blue" if i % 2 else "green") for i in range(400)}
        expose(session, split=experiment.salt, endpoint="shop", units=units, at=at)
        converted = [
            (u, "purchase", 1.0) for i, u in enumerate(units) if i % (3 if units[u] == "green" else 9) == 0
        ]
        outcomes(session, converted, at=at + timedelta(minutes=1))
    for _ in range(2):  # two snapshots make a line
        with unit_of_work(session_factory) as session:
            experiment = service.get(session, "page")
            results.snapshot(session, experiment, results.compute(session, experiment))

    fragment = client.get("/experiments/page/results")
    assert fragment.status_code == 200
    assert "Sample ratio OK" in fragment.text
    assert 'data-testid="forest-plot"' in fragment.text
    assert 'data-testid="line-chart"' in fragment.text
    assert 'data-testid="chances"' in fragment.text
    assert "<td>200</td>" in fragment.text  # units per arm in the progress table

    stray = client.post("/experiments/page/start", headers=portal)
    assert 'data-testid="refused"' in stray.text
    assert "only a draft one can be started" in stray.text

    inside = client.get("/endpoints/shop/experiments")
    assert 'data-testid="endpoint-experiment"' in inside.text
    assert "page" in inside.text
    assert client.post("/experiments/page/stop", headers=portal).status_code == 204
    assert client.get("/endpoints/shop/experiments").text == ""
    with unit_of_work(session_factory) as session:
        found = endpoints.get(session, "shop")
        assert (endpoints.weights(session, found), found.traffic_owner) == ({"blue": 100, "green": 0}, None)


def test_a_refused_start_through_the_portal_commits_nothing(
    client: TestClient, admin: Caller, portal: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    body = definition("blocked", "shop", {"blue": 50, "green": 50}, "blue")
    assert client.post("/api/v1/experiments", headers=admin.headers, json=body).status_code == 201
    with unit_of_work(session_factory) as session:
        green = session.scalars(select(Deployment).where(Deployment.name == "green")).one()
        green.state = "progressing"
    refused = client.post("/experiments/blocked/start", headers=portal)
    assert 'data-testid="refused"' in refused.text
    with unit_of_work(session_factory) as session:
        found = endpoints.get(session, "shop")
        assert found.traffic_owner is None, "the claim was rolled back with the refused start"
        assert service.get(session, "blocked").state == "draft"
