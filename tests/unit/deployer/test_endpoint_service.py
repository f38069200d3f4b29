"""The endpoint services on a real (migrated SQLite or PostgreSQL) database with real Build and
Deployment rows: set_weights, the traffic owner lock, settings, and what served at a time T."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from atoll.audit import AuditEvent
from atoll.db import make_session_factory, unit_of_work, utcnow
from atoll.deployer import endpoints, states
from atoll.deployer.models import Deployment, DeploymentRevision, EndpointChange
from atoll.deployer.traffic_history import served_at
from atoll.errors import Conflict, InvalidInput, NotFound
from atoll.registry.models import Build


def deployment(session: Session, name: str, version: int, *, state: str = states.AVAILABLE) -> Deployment:
    build = Build(model_name="fraud", version=version, backend="cpu", status="succeeded")
    session.add(build)
    session.flush()
    found = Deployment(
        name=name,
        model_name="fraud",
        version=version,
        backend="cpu",
        build_id=build.id,
        target="local",
        state=state,
        address=f"http://127.0.0.1:{9000 + version}",
        created_by="test",
    )
    session.add(found)
    session.flush()
    session.add(
        DeploymentRevision(
            deployment_id=found.id,
            revision=1,
            build_id=build.id,
            version=version,
            replicas=1,
            cause="deploy",
            created_by="test",
        )
    )
    return found


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """An endpoint 'scoring' with blue (v1, serving) and green (v2, available at 0) behind it."""
    factory = make_session_factory(engine)
    with unit_of_work(factory) as setup:
        scoring = endpoints.create(setup, actor=None, name="scoring")
        blue, green = deployment(setup, "blue", 1), deployment(setup, "green", 2)
        endpoints.attach(setup, endpoint=scoring, deployment=blue, actor=None, reason="")
        endpoints.attach(setup, endpoint=scoring, deployment=green, actor=None, reason="")
        endpoints.switch(setup, actor=None, name="scoring", to="blue")
    with factory() as session:
        yield session


class TestSetWeights:
    def test_a_split_is_set_at_once_with_history_and_audit(self, session: Session) -> None:
        change = endpoints.set_weights(
            session, actor=None, name="scoring", to={"blue": 90, "green": 10}, reason="try v2"
        )
        assert change is not None and change.kind == "split"
        assert (change.from_weights, change.to_weights) == (
            {"blue": 100, "green": 0},
            {"blue": 90, "green": 10},
        )
        assert endpoints.weights(session, endpoints.get(session, "scoring")) == {"blue": 90, "green": 10}
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "endpoint.split")).one()
        assert audit.summary["to"] == {"blue": 90, "green": 10} and audit.summary["reason"] == "try v2"
        assert (
            endpoints.set_weights(session, actor=None, name="scoring", to={"blue": 90, "green": 10}) is None
        )

    def test_left_out_deployments_get_zero(self, session: Session) -> None:
        endpoints.set_weights(session, actor=None, name="scoring", to={"green": 100})
        assert endpoints.weights(session, endpoints.get(session, "scoring")) == {"blue": 0, "green": 100}

    @pytest.mark.parametrize(
        ("weights", "said"),
        [
            ({"blue": 60, "green": 30}, "they sum to 90; they must sum to 100"),
            ({"blue": 101, "green": -1}, "a weight is 0 to 100"),
            (
                {"blue": 50, "elsewhere": 50},
                "elsewhere is not behind endpoint 'scoring' (its deployments: blue, green)",
            ),
            ({"blue": 0}, "they sum to 0"),
        ],
    )
    def test_bad_weights_are_422_naming_the_field_and_change_nothing(
        self, session: Session, weights: dict[str, int], said: str
    ) -> None:
        with pytest.raises(InvalidInput, match=re.escape(said)) as caught:
            endpoints.set_weights(session, actor=None, name="scoring", to=weights)
        assert caught.value.extra.get("field") == "weights"
        session.rollback()
        assert endpoints.weights(session, endpoints.get(session, "scoring")) == {"blue": 100, "green": 0}

    def test_weight_on_a_deployment_that_is_not_available_is_409(self, session: Session) -> None:
        green = session.scalars(select(Deployment).where(Deployment.name == "green")).one()
        green.state = states.PROGRESSING
        with pytest.raises(Conflict, match="'green' is progressing, not available"):
            endpoints.set_weights(session, actor=None, name="scoring", to={"blue": 50, "green": 50})

    def test_a_new_salt_is_a_change_even_with_the_same_weights(self, session: Session) -> None:
        change = endpoints.set_weights(session, actor=None, name="scoring", to={"blue": 100}, salt="exp-1")
        assert change is not None and change.split_salt == "exp-1"
        assert endpoints.get(session, "scoring").split_salt == "exp-1"

    def test_an_unknown_endpoint_is_404(self, session: Session) -> None:
        with pytest.raises(NotFound, match="no endpoint named 'nowhere'"):
            endpoints.set_weights(session, actor=None, name="nowhere", to={"blue": 100})


class TestTrafficOwner:
    def test_only_the_owner_changes_weights_or_switches_until_it_releases(self, session: Session) -> None:
        endpoints.claim_traffic(session, name="scoring", owner="canary:12")
        with pytest.raises(Conflict, match="controlled by canary:12") as caught:
            endpoints.set_weights(session, actor=None, name="scoring", to={"blue": 50, "green": 50})
        assert caught.value.extra.get("owner") == "canary:12" and caught.value.extra.get("field") == "weights"
        with pytest.raises(Conflict, match="controlled by canary:12"):
            endpoints.switch(session, actor=None, name="scoring", to="green")
        with pytest.raises(Conflict, match="controlled by canary:12"):
            endpoints.claim_traffic(session, name="scoring", owner="experiment:checkout")
        step = endpoints.set_weights(
            session,
            actor=None,
            name="scoring",
            to={"blue": 95, "green": 5},
            owner="canary:12",
            kind="canary",
            job_id=7,
        )
        assert step is not None and (step.kind, step.job_id) == ("canary", 7)
        endpoints.release_traffic(session, name="scoring", owner="experiment:checkout")  # not its: no effect
        assert endpoints.get(session, "scoring").traffic_owner == "canary:12"
        endpoints.release_traffic(session, name="scoring", owner="canary:12")
        assert (
            endpoints.set_weights(session, actor=None, name="scoring", to={"blue": 50, "green": 50})
            is not None
        )

    def test_the_owner_may_claim_again(self, session: Session) -> None:
        endpoints.claim_traffic(session, name="scoring", owner="canary:12")
        assert (
            endpoints.claim_traffic(session, name="scoring", owner="canary:12").traffic_owner == "canary:12"
        )


class TestSettings:
    def test_settings_merge_and_null_removes_audited(self, session: Session) -> None:
        endpoints.update(
            session, actor=None, name="scoring", settings={"unit_field": "customer.id"}, reason="sticky"
        )
        endpoints.update(session, actor=None, name="scoring", settings={"unit_header": "X-Customer"})
        assert endpoints.get(session, "scoring").settings == {
            "unit_field": "customer.id",
            "unit_header": "X-Customer",
        }
        endpoints.update(
            session, actor=None, name="scoring", settings={"unit_field": None}, description="fraud"
        )
        found = endpoints.get(session, "scoring")
        assert found.settings == {"unit_header": "X-Customer"} and found.description == "fraud"
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "endpoint.update")
        ).all()
        assert len(actions) == 3

    @pytest.mark.parametrize(
        ("patch", "said"),
        [
            (
                {"unit_feild": "x"},
                "'unit_feild' is not a setting of an endpoint (known: on_alias_move, unit_field, unit_header)",
            ),
            ({"unit_field": "customer..id"}, "unit_field must be a JSON field or a dotted path"),
            ({"unit_header": "X Customer"}, "unit_header must be a header name"),
            ({"unit_field": 3}, "unit_field must be"),
            ({"on_alias_move": "rolling"}, "on_alias_move must be 'switch' or 'canary'"),
        ],
    )
    def test_bad_settings_are_422_naming_the_key(
        self, session: Session, patch: dict[str, object], said: str
    ) -> None:
        with pytest.raises(InvalidInput, match=re.escape(said)):
            endpoints.update(session, actor=None, name="scoring", settings=patch)


class TestServedAt:
    def test_the_split_and_the_revision_in_force_at_each_time(self, session: Session) -> None:
        start = utcnow()
        assert served_at(session, "scoring", start - timedelta(days=1)).routes == []
        at_start = served_at(session, "scoring", start)
        assert [(r.deployment, r.weight, r.version) for r in at_start.routes] == [
            ("blue", 100, 1),
            ("green", 0, 2),
        ]
        assert at_start.change_kind == "switch"

        # later: a split, then blue is updated to version 3 (a new revision with a new build)
        changes = session.scalars(select(EndpointChange).order_by(EndpointChange.id)).all()
        for change in changes:
            change.at = start - timedelta(hours=2)
        endpoints.set_weights(session, actor=None, name="scoring", to={"blue": 70, "green": 30})
        split_change = session.scalars(select(EndpointChange).order_by(EndpointChange.id.desc())).first()
        assert split_change is not None
        split_change.at = start - timedelta(hours=1)
        blue = session.scalars(select(Deployment).where(Deployment.name == "blue")).one()
        for revision in session.scalars(select(DeploymentRevision)):
            revision.created_at = start - timedelta(hours=3)
        build_3 = Build(model_name="fraud", version=3, backend="cpu", status="succeeded")
        session.add(build_3)
        session.flush()
        session.add(
            DeploymentRevision(
                deployment_id=blue.id, revision=2, build_id=build_3.id, version=3, replicas=1, cause="update",
                created_by="test", created_at=start - timedelta(minutes=30),
            )
        )  # fmt: skip
        session.flush()

        before_split = served_at(session, "scoring", start - timedelta(minutes=90))
        assert [(r.deployment, r.weight, r.version, r.revision) for r in before_split.routes] == [
            ("blue", 100, 1, 1),
            ("green", 0, 2, 1),
        ]
        split_v1 = served_at(session, "scoring", start - timedelta(minutes=45))
        assert [(r.deployment, r.weight, r.version) for r in split_v1.routes] == [
            ("blue", 70, 1),
            ("green", 30, 2),
        ]
        assert (
            split_v1.change_kind == "split"
            and split_v1.split_salt == endpoints.get(session, "scoring").split_salt
        )
        split_v3 = served_at(
            session, "scoring", (start - timedelta(minutes=10)).replace(tzinfo=None)
        )  # naive: UTC
        assert [(r.deployment, r.weight, r.version, r.build_id, r.backend) for r in split_v3.routes] == [
            ("blue", 70, 3, build_3.id, "cpu"),
            ("green", 30, 2, green_build(session), "cpu"),
        ]


def green_build(session: Session) -> int:
    return session.scalars(select(Deployment.build_id).where(Deployment.name == "green")).one()
