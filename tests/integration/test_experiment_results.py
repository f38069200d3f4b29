"""Experiment results over a real database and verdicts against a real MLflow.

Exposure rows are written straight into `exposure_events`, as the router writes them (the
test through the real router is tests/integration/test_experiment_router.py). The readout must
equal the engine run on sums computed by hand from the same rows; SRM blocks the verdict;
concluding records the verdict as evidence on each arm's version; `--promote` moves the
winner's alias through the gates and the traffic in one step, or changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.abtest.models import Experiment, ExperimentResult
from atoll.abtest.stats import analyze
from atoll.audit import AuditEvent
from atoll.db import unit_of_work
from atoll.deployer import endpoints
from atoll.registry.models import Evidence

from .conftest import Caller
from .experimenting import definition, expose, hand_request, outcomes, serve

API = "/api/v1/experiments"


def _start(client: TestClient, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    created = client.post(API, headers=caller.headers, json=body)
    assert created.status_code == 201, created.text
    started = client.post(f"{API}/{body['key']}/start", headers=caller.headers)
    assert started.status_code == 200, started.text
    result: dict[str, Any] = started.json()
    return result


def _simulate(
    factory: sessionmaker[Session],
    experiment: dict[str, Any],
    rates: dict[str, float],
    units: int,
    *,
    seed: int,
    shares: dict[str, float] | None = None,
) -> dict[str, list[tuple[int, float]]]:
    """Expose `units` units and post their outcomes; returns per arm each unit's (converted, revenue)."""
    rng = np.random.default_rng(seed)
    arms = list(rates)
    p = [(shares or {}).get(a, 1 / len(arms)) for a in arms]
    assigned = {f"u{i}": arms[int(rng.choice(len(arms), p=p))] for i in range(units)}
    start = datetime.fromisoformat(experiment["started_at"]) + timedelta(seconds=1)
    per_arm: dict[str, list[tuple[int, float]]] = {a: [] for a in arms}
    rows: list[tuple[str, str, float]] = []
    late: list[tuple[str, str, float]] = []
    for unit, arm in assigned.items():
        converted = int(rng.random() < rates[arm])
        revenue = float(np.round(rng.gamma(2.0, 5.0), 2)) if converted else 0.0
        if converted:
            rows += [(unit, "purchase", 1.0), (unit, "revenue", revenue)]
        if rng.random() < 0.1:  # outside the attribution window: never counted
            late.append((unit, "purchase", 1.0))
        per_arm[arm].append((converted, revenue))
    with unit_of_work(factory) as session:
        expose(session, split=experiment["salt"], endpoint=experiment["endpoint"], units=assigned, at=start)
        outcomes(session, rows, at=start + timedelta(minutes=5), experiment=experiment["key"])
        outcomes(
            session,
            [(u, m, v) for u, m, v in late],
            at=start + timedelta(seconds=experiment["attribution_seconds"] + 60),
        )
        outcomes(
            session,
            [("stranger-1", "purchase", 1.0), ("stranger-2", "purchase", 1.0)],
            at=start + timedelta(minutes=5),
        )
    return per_arm


def _run_between_versions(
    client: TestClient,
    caller: Caller,
    factory: sessionmaker[Session],
    model: str,
    key: str,
    rates: dict[str, float],
    units: int,
    *,
    seed: int,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`model` v1 (blue, serving) and v2 (green) on `shop`, an experiment `key` 50/50, simulated."""
    serve(factory, "shop", {"blue": 100, "green": 0}, model=model, versions={"blue": 1, "green": 2})
    if policy is not None:
        put = client.put(f"/api/v1/models/{model}/policies/champion", headers=caller.headers, json=policy)
        assert put.status_code == 200, put.text
    experiment = _start(client, caller, definition(key, "shop", {"blue": 50, "green": 50}, "blue"))
    _simulate(factory, experiment, rates, units, seed=seed)
    return experiment


class TestResults:
    def test_the_readout_is_the_engine_on_the_sums_computed_by_hand(
        self, client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        serve(session_factory, "shop", {"blue": 100, "green": 0})
        body = definition(
            "lift",
            "shop",
            {"blue": 50, "green": 50},
            "blue",
            attribution_seconds=3600,
            metrics=[
                {"name": "conversion", "type": "binary", "event": "purchase"},
                {"name": "revenue", "type": "mean", "role": "secondary", "event": "revenue"},
            ],
        )
        experiment = _start(client, admin, body)
        per_arm = _simulate(session_factory, experiment, {"blue": 0.10, "green": 0.16}, 3000, seed=7)

        found = client.get(f"{API}/lift/results", headers=admin.headers)
        assert found.status_code == 200, found.text
        readout = found.json()
        expected = analyze(hand_request(experiment, {a: [c for c, _ in rows] for a, rows in per_arm.items()}))
        got = readout["analysis"]
        assert got["srm"]["observed"] == expected.srm.observed
        for arm in ("blue", "green"):
            assert readout["sums"]["conversion"][arm]["n"] == len(per_arm[arm])
            assert readout["sums"]["conversion"][arm]["sum"] == sum(c for c, _ in per_arm[arm])
            assert readout["sums"]["revenue"][arm]["sum"] == pytest.approx(sum(r for _, r in per_arm[arm]))
        comparison, hand = got["metrics"][0]["comparisons"][0], expected.metrics[0].comparisons[0]
        assert comparison["p_value"] == pytest.approx(hand.p_value, rel=1e-9)
        assert comparison["absolute_lift"] == pytest.approx(hand.absolute_lift, rel=1e-9)
        assert comparison["relative_ci"]["lower"] == pytest.approx(hand.relative_ci.lower, rel=1e-9)  # type: ignore[union-attr]
        assert got["decisions"][0]["verdict"] == expected.decisions[0].verdict == "ship"
        assert readout["verdict"] == "won"
        assert readout["winner"] == "green"
        assert [m["name"] for m in readout["secondary"]["metrics"]] == ["revenue"]
        assert 0.99 < readout["chance_to_beat_control"]["conversion"]["green"] <= 1.0
        assert readout["unexposed_outcomes"] == 2  # the strangers: stored, counted, not analysed
        assert {p["arm"]: p["units"] for p in readout["progress"]} == {a: len(r) for a, r in per_arm.items()}

    def test_a_sample_ratio_mismatch_blocks_the_verdict(
        self, client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
    ) -> None:
        serve(session_factory, "shop", {"blue": 100, "green": 0})
        experiment = _start(client, admin, definition("skewed", "shop", {"blue": 50, "green": 50}, "blue"))
        _simulate(
            session_factory,
            experiment,
            {"blue": 0.1, "green": 0.3},
            2000,
            seed=3,
            shares={"blue": 0.6, "green": 0.4},
        )
        readout = client.get(f"{API}/skewed/results", headers=admin.headers).json()
        assert readout["analysis"]["srm"]["mismatch"] is True
        assert readout["verdict"] == "invalid"
        refused = client.post(f"{API}/skewed/conclude", headers=admin.headers, json={})
        assert refused.status_code == 409
        assert refused.json()["field"] == "srm"
        assert "sample ratio mismatch" in refused.json()["detail"]
        assert client.get(f"{API}/skewed", headers=admin.headers).json()["state"] == "running"


# --- verdicts and promotion, against a real MLflow -------------------------------------------


@pytest.fixture
def versions(registry_client: TestClient, admin: Caller, log_model: Callable[..., str]) -> str:
    """A registered model with two versions (v1 serves as blue, v2 as green)."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    for seed in (0, 1):
        created = registry_client.post(
            f"/api/v1/models/{name}/versions", headers=admin.headers, json={"run_id": log_model(seed=seed)}
        )
        assert created.status_code == 201, created.text
    return name


def _evidence(factory: sessionmaker[Session], name: str) -> dict[int, list[str]]:
    with unit_of_work(factory) as session:
        rows = session.scalars(
            select(Evidence).where(Evidence.model_name == name).order_by(Evidence.id)
        ).all()
        found: dict[int, list[str]] = {}
        for row in rows:
            found.setdefault(row.version, []).append(row.status)
        return found


def _split(factory: sessionmaker[Session], endpoint: str) -> tuple[dict[str, int], str | None]:
    with unit_of_work(factory) as session:
        found = endpoints.get(session, endpoint)
        return endpoints.weights(session, found), found.traffic_owner


class TestConclusion:
    def test_conclude_records_the_verdict_on_each_version_and_restores_the_split(
        self,
        registry_client: TestClient,
        admin: Caller,
        versions: str,
        session_factory: sessionmaker[Session],
    ) -> None:
        _run_between_versions(
            registry_client,
            admin,
            session_factory,
            versions,
            "flat",
            {"blue": 0.1, "green": 0.1},
            400,
            seed=11,
        )
        concluded = registry_client.post(
            f"{API}/flat/conclude", headers=admin.headers, json={"reason": "done"}
        )
        assert concluded.status_code == 200, concluded.text
        assert concluded.json()["state"] == "concluded"
        assert concluded.json()["verdict"]["verdict"] == "inconclusive"
        assert _evidence(session_factory, versions) == {1: ["inconclusive"], 2: ["inconclusive"]}
        assert _split(session_factory, "shop") == ({"blue": 100, "green": 0}, None)
        with unit_of_work(session_factory) as session:
            snapshots = session.scalar(select(func.count()).select_from(ExperimentResult)) or 0
            assert snapshots == 2  # one per arm of the one metric, at the conclusion
        again = registry_client.post(f"{API}/flat/conclude", headers=admin.headers, json={})
        assert again.status_code == 409

    def test_promote_moves_the_alias_and_the_traffic_to_the_winner_in_one_step(
        self,
        registry_client: TestClient,
        admin: Caller,
        versions: str,
        mlflow_uri: str,
        session_factory: sessionmaker[Session],
    ) -> None:
        _run_between_versions(
            registry_client,
            admin,
            session_factory,
            versions,
            "win",
            {"blue": 0.08, "green": 0.2},
            2000,
            seed=5,
            policy={"protected": False, "gates": {"ab_evidence": True}},
        )

        concluded = registry_client.post(f"{API}/win/conclude", headers=admin.headers, json={"promote": True})
        assert concluded.status_code == 200, concluded.text
        verdict = concluded.json()["verdict"]
        assert verdict["verdict"] == "won"
        assert verdict["promoted"] == {
            "model": versions,
            "version": 2,
            "alias": "champion",
            "deployment": "green",
        }
        assert MlflowClient(mlflow_uri).get_registered_model(versions).aliases.get("champion") == "2"
        assert _split(session_factory, "shop") == ({"blue": 0, "green": 100}, None)
        assert _evidence(session_factory, versions) == {1: ["lost"], 2: ["won"]}
        with unit_of_work(session_factory) as session:
            actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert {"experiment.conclude", "alias.promote", "evidence.ab_verdict", "endpoint.experiment"} <= set(
            actions
        )

    def test_a_failing_gate_is_409_naming_it_and_nothing_changes(
        self,
        registry_client: TestClient,
        admin: Caller,
        versions: str,
        mlflow_uri: str,
        session_factory: sessionmaker[Session],
    ) -> None:
        _run_between_versions(
            registry_client,
            admin,
            session_factory,
            versions,
            "gated",
            {"blue": 0.08, "green": 0.2},
            2000,
            seed=5,
            policy={"protected": False, "gates": {"ab_evidence": True, "second_approver": True}},
        )
        before = _split(session_factory, "shop")

        refused = registry_client.post(f"{API}/gated/conclude", headers=admin.headers, json={"promote": True})
        assert refused.status_code == 409, refused.text
        assert "second_approver" in refused.json()["detail"]
        gates = {g["gate"]: g["passed"] for g in refused.json()["gates"]}
        assert gates == {
            "role": True,
            "ab_evidence": True,
            "second_approver": False,
        }  # read the pending verdict
        assert MlflowClient(mlflow_uri).get_registered_model(versions).aliases.get("champion") is None
        assert _split(session_factory, "shop") == before == ({"blue": 50, "green": 50}, "experiment:gated")
        assert _evidence(session_factory, versions) == {}
        with unit_of_work(session_factory) as session:
            state = session.scalar(select(Experiment.state).where(Experiment.key == "gated"))
            conclusions = session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "experiment.conclude")
            )
        assert state == "running"
        assert conclusions == 0

    def test_promote_without_a_winner_is_409(
        self,
        registry_client: TestClient,
        admin: Caller,
        versions: str,
        session_factory: sessionmaker[Session],
    ) -> None:
        _run_between_versions(
            registry_client, admin, session_factory, versions, "tie", {"blue": 0.1, "green": 0.1}, 300, seed=2
        )
        refused = registry_client.post(f"{API}/tie/conclude", headers=admin.headers, json={"promote": True})
        assert refused.status_code == 409
        assert refused.json()["field"] == "promote"
        assert _evidence(session_factory, versions) == {}
