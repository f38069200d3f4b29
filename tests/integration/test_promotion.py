"""Promotions behind gates, against a real MLflow: every gate explained, one winner at a time,
nothing half-written, history and rollback."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.audit import AuditEvent
from atoll.auth.policy import Role
from atoll.db import unit_of_work, utcnow
from atoll.errors import Unavailable
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.models import AliasMove, Build, PromotionLock

from .conftest import Caller, MakeCaller

Register = Callable[..., str]


@pytest.fixture
def model(registry_client: TestClient, admin: Caller, log_model: Callable[..., str]) -> Register:
    """Register a fresh model with `count` versions (auc metrics given per version)."""

    def make(*aucs: float) -> str:
        name = f"m-{uuid.uuid4().hex[:8]}"
        for seed, auc in enumerate(aucs or (0.9,)):
            run_id = log_model({"auc": auc}, seed=seed)
            created = registry_client.post(
                f"/api/v1/models/{name}/versions", headers=admin.headers, json={"run_id": run_id}
            )
            assert created.status_code == 201, created.text
        return name

    return make


def _promote(
    client: TestClient, caller: Caller, name: str, version: int, alias: str = "production", **extra: object
) -> httpx.Response:
    response: httpx.Response = client.post(
        f"/api/v1/models/{name}/aliases/{alias}/promote",
        headers=caller.headers,
        json={"version": version, **extra},
    )
    return response


def _alias(mlflow_uri: str, name: str, alias: str = "production") -> str | None:
    found: str | None = MlflowClient(mlflow_uri).get_registered_model(name).aliases.get(alias)
    return found


def _set_policy(client: TestClient, caller: Caller, name: str, alias: str, policy: dict[str, object]) -> None:
    response = client.put(f"/api/v1/models/{name}/policies/{alias}", headers=caller.headers, json=policy)
    assert response.status_code == 200, response.text


class TestGates:
    def test_every_gate_is_evaluated_and_explained(
        self, registry_client: TestClient, admin: Caller, model: Register, mlflow_uri: str
    ) -> None:
        name = model(0.85)
        _set_policy(
            registry_client,
            admin,
            name,
            "production",
            {
                "protected": True,
                "gates": {
                    "required_role": "approver",
                    "builds": ["gpu"],
                    "metrics": [
                        {"name": "auc", "op": ">=", "threshold": 0.9},
                        {"name": "f1", "threshold": 0.5},
                    ],
                    "ab_evidence": True,
                    "no_drift_alert": True,
                    "second_approver": True,
                },
            },
        )
        response = _promote(registry_client, admin, name, 1)
        assert response.status_code == 412
        gates = {g["gate"]: g for g in response.json()["gates"]}
        assert gates["role"]["passed"] is True
        assert gates["build:gpu"] == {
            "gate": "build:gpu",
            "passed": False,
            "reason": "the newest gpu build is queued",
        }
        assert gates["metric:auc"]["reason"] == "auc = 0.85, required >= 0.9"
        assert "has no metric 'f1'" in gates["metric:f1"]["reason"]
        assert gates["ab_evidence"]["passed"] is False
        assert gates["no_drift_alert"]["passed"] is True
        assert gates["second_approver"]["passed"] is False
        assert "auc = 0.85" in response.json()["detail"]
        assert _alias(mlflow_uri, name) is None, "a failed promotion moves nothing"

    def test_gates_pass_once_the_evidence_exists(
        self,
        registry_client: TestClient,
        admin: Caller,
        make_caller: MakeCaller,
        model: Register,
        mlflow_uri: str,
        session_factory: sessionmaker[Session],
    ) -> None:
        name = model(0.95)
        _set_policy(
            registry_client, admin, name, "production",
            {"protected": True, "gates": {"builds": ["gpu"], "ab_evidence": True, "no_drift_alert": True,
                                          "second_approver": True}},
        )  # fmt: skip
        with unit_of_work(session_factory) as session:
            session.add(Build(model_name=name, version=1, backend="gpu", status="succeeded"))
        evidence = f"/api/v1/models/{name}/versions/1/evidence"
        registry_client.post(evidence, headers=admin.headers, json={"kind": "ab_verdict", "status": "won"})
        registry_client.post(evidence, headers=admin.headers, json={"kind": "drift", "status": "alert"})
        blocked = _promote(registry_client, admin, name, 1)
        assert blocked.status_code == 412
        assert {g["gate"] for g in blocked.json()["gates"] if not g["passed"]} == {
            "no_drift_alert",
            "second_approver",
        }

        registry_client.post(evidence, headers=admin.headers, json={"kind": "drift", "status": "ok"})
        self_approval = {"kind": "approval", "status": "approved", "summary": {"alias": "production"}}
        registry_client.post(evidence, headers=admin.headers, json=self_approval)
        assert _promote(registry_client, admin, name, 1).status_code == 412, "one cannot approve oneself"
        approver = make_caller("second", Role.approver)
        assert registry_client.post(evidence, headers=approver.headers, json=self_approval).status_code == 201
        promoted = _promote(registry_client, admin, name, 1, reason="won the A/B")
        assert promoted.status_code == 200, promoted.text
        assert all(g["passed"] for g in promoted.json()["gates"])
        assert _alias(mlflow_uri, name) == "1"

    def test_required_role_and_protected_alias(
        self, registry_client: TestClient, make_caller: MakeCaller, model: Register, mlflow_uri: str
    ) -> None:
        name = model(0.9)
        engineer = make_caller("eng", Role.engineer)
        refused = _promote(registry_client, engineer, name, 1)
        assert refused.status_code == 412
        assert "eng is engineer; approver or above required" in refused.json()["detail"]
        direct = registry_client.put(
            f"/api/v1/models/{name}/aliases/production", headers=engineer.headers, json={"version": 1}
        )
        assert direct.status_code == 403 and "protected" in direct.json()["detail"]
        staging = registry_client.put(
            f"/api/v1/models/{name}/aliases/staging", headers=engineer.headers, json={"version": 1}
        )
        assert staging.status_code == 200, staging.text
        assert _alias(mlflow_uri, name, "staging") == "1"

    def test_a_metrics_only_policy_keeps_productions_approver_role(
        self, registry_client: TestClient, admin: Caller, make_caller: MakeCaller, model: Register
    ) -> None:
        name = model(0.95)
        _set_policy(
            registry_client, admin, name, "production",
            {"protected": True, "gates": {"metrics": [{"name": "auc", "threshold": 0.9}]}},
        )  # fmt: skip
        policy = registry_client.get(
            f"/api/v1/models/{name}/policies/production", headers=admin.headers
        ).json()
        assert policy["gates"]["required_role"] == "approver"
        engineer = make_caller("eng2", Role.engineer)
        refused = _promote(registry_client, engineer, name, 1)
        assert refused.status_code == 412 and "approver or above required" in refused.json()["detail"]

    def test_force_is_admin_only_and_audited(
        self,
        registry_client: TestClient,
        admin: Caller,
        make_caller: MakeCaller,
        model: Register,
        mlflow_uri: str,
    ) -> None:
        name = model(0.5)
        _set_policy(
            registry_client, admin, name, "production",
            {"protected": True, "gates": {"metrics": [{"name": "auc", "threshold": 0.9}]}},
        )  # fmt: skip
        approver = make_caller("appr", Role.approver)
        assert _promote(registry_client, approver, name, 1, force=True).status_code == 403
        forced = _promote(registry_client, admin, name, 1, force=True, reason="hotfix")
        assert forced.status_code == 200 and forced.json()["forced"] is True
        audit = registry_client.get(
            "/api/v1/audit", headers=admin.headers, params={"action": "alias."}
        ).json()
        assert audit["items"][0]["summary"]["forced"] is True
        assert _alias(mlflow_uri, name) == "1"


class TestOneUnit:
    def test_mlflow_failing_at_the_move_leaves_no_history_or_audit(
        self,
        registry_app: FastAPI,
        admin: Caller,
        model: Register,
        mlflow_uri: str,
        session_factory: sessionmaker[Session],
    ) -> None:
        """MLflow dying between the gate checks and the alias move cannot be caused on
        demand, so this one test substitutes a registry whose `set_alias` fails."""
        name = model(0.9)

        class FailingMove(MlflowRegistry):
            def set_alias(self, name: str, alias: str, version: str) -> None:
                raise Unavailable(f"MLflow at {self.uri} is unreachable (ConnectionError)")

        registry_app.state.mlflow = FailingMove(mlflow_uri)
        with unit_of_work(session_factory) as session:
            audit_before = session.scalar(select(func.count()).select_from(AuditEvent))
        with TestClient(registry_app) as client:
            response = _promote(client, admin, name, 1)
        assert response.status_code == 503
        with unit_of_work(session_factory) as session:
            assert session.scalar(select(func.count()).select_from(AliasMove)) == 0
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == audit_before
            assert session.scalar(select(func.count()).select_from(PromotionLock)) == 0
        assert _alias(mlflow_uri, name) is None

    def test_a_promotion_in_flight_makes_a_second_one_409_naming_it(
        self,
        registry_client: TestClient,
        admin: Caller,
        model: Register,
        session_factory: sessionmaker[Session],
    ) -> None:
        name = model(0.9, 0.91)
        with unit_of_work(session_factory) as session:
            session.add(
                PromotionLock(
                    model_name=name, alias="production", holder="alice", target_version=1,
                    expires_at=utcnow() + timedelta(minutes=1),
                )
            )  # fmt: skip
        response = _promote(registry_client, admin, name, 2)
        assert response.status_code == 409
        assert "alice (to v1)" in response.json()["detail"]
        assert response.json()["winner"] == "alice"

    def test_a_stale_lock_from_a_crashed_promotion_does_not_block(
        self,
        registry_client: TestClient,
        admin: Caller,
        model: Register,
        session_factory: sessionmaker[Session],
    ) -> None:
        name = model(0.9)
        with unit_of_work(session_factory) as session:
            session.add(
                PromotionLock(
                    model_name=name, alias="production", holder="ghost", target_version=1,
                    expires_at=utcnow() - timedelta(seconds=1),
                )
            )  # fmt: skip
        assert _promote(registry_client, admin, name, 1).status_code == 200

    def test_two_promoters_at_once_one_wins(
        self, live_registry_url: str, admin: Caller, make_caller: MakeCaller, model: Register, mlflow_uri: str
    ) -> None:
        import httpx

        name = model(0.9, 0.92)
        other = make_caller("bob", Role.admin)
        barrier = threading.Barrier(2)
        results: dict[str, httpx.Response] = {}

        def promote(caller: Caller, version: int) -> None:
            barrier.wait()
            results[caller.username] = httpx.post(
                f"{live_registry_url}/api/v1/models/{name}/aliases/production/promote",
                headers=caller.headers,
                json={"version": version},
                timeout=60,
            )

        threads = [
            threading.Thread(target=promote, args=(admin, 1)),
            threading.Thread(target=promote, args=(other, 2)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted(r.status_code for r in results.values())
        if codes == [200, 200]:
            pytest.fail("both promotions ran; the second did not see the first in flight")
        assert codes == [200, 409]
        winner = next(user for user, r in results.items() if r.status_code == 200)
        loser = next(r for r in results.values() if r.status_code == 409)
        assert winner in loser.json()["detail"]
        assert _alias(mlflow_uri, name) == ("1" if winner == "root" else "2")


class TestHistory:
    def test_history_and_rollback(
        self, registry_client: TestClient, admin: Caller, model: Register, mlflow_uri: str
    ) -> None:
        name = model(0.9, 0.93)
        assert _promote(registry_client, admin, name, 1, reason="first").status_code == 200
        assert _promote(registry_client, admin, name, 2, reason="better").status_code == 200
        again = _promote(registry_client, admin, name, 2)
        assert again.status_code == 409 and "already points to version 2" in again.json()["detail"]
        rolled = registry_client.post(
            f"/api/v1/models/{name}/aliases/production/rollback",
            headers=admin.headers,
            json={"reason": "regression"},
        )
        assert rolled.status_code == 200, rolled.text
        assert (rolled.json()["from_version"], rolled.json()["to_version"]) == (2, 1)
        assert _alias(mlflow_uri, name) == "1"
        moves = registry_client.get(f"/api/v1/models/{name}/history", headers=admin.headers).json()
        assert [(m["kind"], m["from_version"], m["to_version"], m["reason"]) for m in moves] == [
            ("rollback", 2, 1, "regression"),
            ("promote", 1, 2, "better"),
            ("promote", None, 1, "first"),
        ]
        assert all(m["actor"] == "root" and m["gates"] for m in moves)
        model_view = registry_client.get(f"/api/v1/models/{name}", headers=admin.headers).json()
        assert model_view["aliases"] == {"production": 1}

    def test_rollback_without_history_is_409(
        self, registry_client: TestClient, admin: Caller, model: Register
    ) -> None:
        name = model(0.9)
        response = registry_client.post(
            f"/api/v1/models/{name}/aliases/production/rollback", headers=admin.headers, json={}
        )
        assert response.status_code == 409

    def test_unknown_model_and_version_are_404_naming_them(
        self, registry_client: TestClient, admin: Caller, model: Register
    ) -> None:
        name = model(0.9)
        missing_version = _promote(registry_client, admin, name, 7)
        assert missing_version.status_code == 404 and "no version 7" in missing_version.json()["detail"]
        missing_model = _promote(registry_client, admin, "nope-model", 1)
        assert missing_model.status_code == 404 and "'nope-model'" in missing_model.json()["detail"]
