"""The full sync queues builds for versions created straight in MLflow (real MLflow, real DB).

No webhook reaches these tests' databases: each test has its own database and no app
serving it receives MLflow deliveries, so every build row here was queued by a sync.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.audit import SYSTEM_ACTOR, AuditEvent
from atoll.backends import Catalog, cached_catalog
from atoll.cli.runtime import SYNC_JOB, job_handlers
from atoll.db import unit_of_work, utcnow
from atoll.jobs import SUCCEEDED, Job, Worker, enqueue
from atoll.registry.builds.service import BUILD_JOB, QUEUED, enqueue_builds
from atoll.registry.mlflow.adapter import MlflowModel, MlflowVersion
from atoll.registry.models import Build, CachedModel, CachedVersion
from atoll.registry.sync import _queue_builds, _upsert_model
from atoll.settings import Settings

from .conftest import Caller

RegisterVersion = Callable[[str], int]


def _name() -> str:
    return f"synced-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def register_version(mlflow_uri: str, log_model: Callable[..., str]) -> RegisterVersion:
    """Create a version straight in MLflow with the plain client (never through Atoll)."""
    import mlflow

    run_id = log_model()

    def register(name: str) -> int:
        mlflow.set_tracking_uri(mlflow_uri)
        created = mlflow.register_model(f"runs:/{run_id}/model", name)
        assert created.status == "READY"
        return int(created.version)

    return register


@pytest.fixture
def catalog(registry_settings: Settings) -> Catalog:
    return cached_catalog(registry_settings.backends_file)


def _sync_job(settings: Settings, factory: sessionmaker[Session]) -> dict[str, object]:
    """Run one `registry.sync` job through a real worker (its handler, its transaction)."""
    worker = Worker(factory=factory, handlers={SYNC_JOB: job_handlers(settings)[SYNC_JOB]})
    with unit_of_work(factory) as session:
        job_id = enqueue(session, kind=SYNC_JOB, max_attempts=1).id
    assert worker.run_once()
    with unit_of_work(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == SUCCEEDED, job and job.last_error
        assert job.result is not None
        return dict(job.result)


def _builds(factory: sessionmaker[Session], name: str, version: int | None = None) -> list[Build]:
    with unit_of_work(factory) as session:
        query = select(Build).where(Build.model_name == name)
        if version is not None:
            query = query.where(Build.version == version)
        rows = list(session.scalars(query.order_by(Build.id)))
        session.expunge_all()
        return rows


def _count(factory: sessionmaker[Session], model: type[Build] | type[Job] | type[CachedModel]) -> int:
    with unit_of_work(factory) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _build_jobs(factory: sessionmaker[Session]) -> list[Job]:
    with unit_of_work(factory) as session:
        rows = list(session.scalars(select(Job).where(Job.kind == BUILD_JOB).order_by(Job.id)))
        session.expunge_all()
        return rows


class TestSyncQueuesBuilds:
    def test_the_first_sync_of_a_registry_with_versions_queues_nothing(
        self,
        registry_settings: Settings,
        session_factory: sessionmaker[Session],
        register_version: RegisterVersion,
    ) -> None:
        name = _name()
        register_version(name)
        register_version(name)
        assert _count(session_factory, CachedModel) == 0  # this test's database: a first sync

        result = _sync_job(registry_settings, session_factory)

        assert result["builds_queued"] == 0
        assert isinstance(result["versions"], int) and result["versions"] >= 2
        with unit_of_work(session_factory) as session:
            cached = session.scalars(
                select(CachedVersion.version)
                .join(CachedModel, CachedModel.id == CachedVersion.model_id)
                .where(CachedModel.name == name)
            )
            assert sorted(cached) == [1, 2]
        assert _count(session_factory, Build) == 0
        assert _build_jobs(session_factory) == []

    def test_a_version_created_straight_in_mlflow_is_queued_by_the_next_sync_once(
        self,
        registry_settings: Settings,
        session_factory: sessionmaker[Session],
        register_version: RegisterVersion,
        catalog: Catalog,
    ) -> None:
        seeded = _name()
        register_version(seeded)
        assert _sync_job(registry_settings, session_factory)["builds_queued"] == 0

        name = _name()
        version = register_version(name)
        assert _builds(session_factory, name) == []
        result = _sync_job(registry_settings, session_factory)

        assert result["builds_queued"] == 1
        builds = _builds(session_factory, name)
        assert sorted(b.backend for b in builds) == sorted(catalog.names())
        assert {(b.version, b.status, b.requested_by) for b in builds} == {(version, QUEUED, None)}
        assert _builds(session_factory, seeded) == []
        jobs = _build_jobs(session_factory)
        assert len(jobs) == len(catalog.names())
        assert {j.status for j in jobs} == {"queued"}
        assert {j.id for j in jobs} == {b.job_id for b in builds}
        assert {int(j.payload["build_id"]) for j in jobs} == {b.id for b in builds}
        with unit_of_work(session_factory) as session:
            events = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "build.enqueue")))
            assert [(e.actor, e.target_id) for e in events] == [(SYSTEM_ACTOR, f"{name}/{version}")]

        again = _sync_job(registry_settings, session_factory)
        assert again["builds_queued"] == 0
        assert len(_builds(session_factory, name)) == len(catalog.names())
        assert len(_build_jobs(session_factory)) == len(catalog.names())

    def test_a_version_that_already_has_builds_is_not_queued_again(
        self,
        registry_settings: Settings,
        session_factory: sessionmaker[Session],
        register_version: RegisterVersion,
        catalog: Catalog,
    ) -> None:
        name = _name()
        register_version(name)
        assert _sync_job(registry_settings, session_factory)["builds_queued"] == 0

        built = register_version(name)
        with unit_of_work(session_factory) as session:  # e.g. the webhook got there first
            enqueue_builds(session, name=name, version=built, backends=["cpu"], actor=None, catalog=catalog)
        fresh = register_version(name)
        result = _sync_job(registry_settings, session_factory)

        assert result["builds_queued"] == 1
        assert [b.backend for b in _builds(session_factory, name, built)] == ["cpu"]
        assert len(_builds(session_factory, name, fresh)) == len(catalog.names())
        assert _builds(session_factory, name, 1) == []

    def test_only_ready_versions_are_queued(
        self, session_factory: sessionmaker[Session], catalog: Catalog
    ) -> None:
        # MLflow's own stores create versions READY at once; the other statuses come from
        # asynchronous registries, so the rows here are written as a sync would find them.
        name = _name()
        with unit_of_work(session_factory) as session:
            model = CachedModel(name=name, mlflow_updated_at=utcnow())
            session.add(model)
            session.flush()
            rows = [
                CachedVersion(
                    model_id=model.id,
                    version=number,
                    source="runs:/r/model",
                    status=status,
                    mlflow_created_at=utcnow(),
                )
                for number, status in [(1, "PENDING_REGISTRATION"), (2, "FAILED_REGISTRATION"), (3, "READY")]
            ]
            session.add_all(rows)
            session.flush()
            assert _queue_builds(session, [(name, row) for row in rows], catalog) == 1
        assert {b.version for b in _builds(session_factory, name)} == {3}

    def test_a_cached_version_turning_ready_becomes_buildable(
        self, session_factory: sessionmaker[Session]
    ) -> None:
        name = _name()
        model = MlflowModel(name=name, description="", tags={}, aliases={}, created_ms=1, updated_ms=1)

        def version(status: str) -> MlflowVersion:
            return MlflowVersion(
                name=name,
                version="1",
                source="runs:/r/model",
                run_id="r",
                status=status,
                description="",
                tags={},
                aliases=[],
                created_ms=1,
                updated_ms=1,
            )

        with unit_of_work(session_factory) as session:
            _row, found = _upsert_model(session, model, [version("PENDING_REGISTRATION")])
            assert [v.version for v in found] == [1]  # inserted (and then skipped: not READY)
        with unit_of_work(session_factory) as session:
            _row, found = _upsert_model(session, model, [version("READY")])
            assert [(v.version, v.status) for v in found] == [(1, "READY")]
        with unit_of_work(session_factory) as session:
            _row, found = _upsert_model(session, model, [version("READY")])
            assert found == []  # cached and READY already: nothing new

    def test_the_admin_sync_now_queues_like_the_scheduled_sync(
        self,
        registry_client: TestClient,
        admin: Caller,
        register_version: RegisterVersion,
        mlflow_uri: str,
    ) -> None:
        name = _name()
        first = registry_client.post("/api/v1/registry/sync", headers=admin.headers)
        assert first.status_code == 200 and first.json()["builds_queued"] == 0

        version = register_version(name)
        assert MlflowClient(mlflow_uri).get_model_version(name, str(version)).status == "READY"
        synced = registry_client.post("/api/v1/registry/sync", headers=admin.headers)
        assert synced.status_code == 200 and synced.json()["builds_queued"] == 1
        listed = registry_client.get(
            f"/api/v1/models/{name}/versions/{version}/builds", headers=admin.headers
        )
        assert sorted(b["backend"] for b in listed.json()) == ["asic", "cpu", "gpu"]
        again = registry_client.post("/api/v1/registry/sync", headers=admin.headers)
        assert again.json()["builds_queued"] == 0
