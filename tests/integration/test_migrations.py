"""Migrations upgrade from empty, downgrade to nothing, upgrade again; and match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import DatabaseError

from atoll import migrate
from atoll.migrations.metadata import Base


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_round_trip_from_empty(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    assert migrate.current(empty_database_url) == _revisions()[-1]
    assert _tables(empty_database_url) == set(Base.metadata.tables)
    migrate.downgrade(empty_database_url, "base")
    assert _tables(empty_database_url) == set()
    migrate.upgrade(empty_database_url)
    assert _tables(empty_database_url) == set(Base.metadata.tables)


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree; write a migration: {diff}"


def test_audit_log_is_append_only_in_the_database(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_events (at, actor, action, target_type, target_id, summary) "
                "VALUES (CURRENT_TIMESTAMP, 'a', 'x.y', 't', '1', '{}')"
            )
        )
    for statement in ("UPDATE audit_events SET actor = 'b'", "DELETE FROM audit_events"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT actor FROM audit_events")).scalar_one() == "a"


@pytest.mark.parametrize("start", _revisions()[:-1])
def test_upgrade_from_every_earlier_head_keeps_data(empty_database_url: str, start: str) -> None:
    migrate.upgrade(empty_database_url, start)
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, password_hash, role, is_active, created_at) "
                "VALUES ('kept', 'x', 'viewer', true, CURRENT_TIMESTAMP)"
            )
        )
    migrate.upgrade(empty_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT username FROM users")).scalar_one() == "kept"
    engine.dispose()
    assert migrate.current(empty_database_url) == _revisions()[-1]


DEPLOYER_TABLES = {
    "endpoints",
    "deployments",
    "deployment_revisions",
    "deployment_events",
    "endpoint_routes",
    "endpoint_changes",
}


def test_the_deployer_migration_upgrades_from_0003_and_downgrades_to_it(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "0003")
    assert not DEPLOYER_TABLES & _tables(empty_database_url)
    engine = create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO builds (model_name, version, backend, status, created_at, emulated, note) "
                "VALUES ('m', 1, 'cpu', 'succeeded', CURRENT_TIMESTAMP, false, '')"
            )
        )
    migrate.upgrade(empty_database_url, "0004")
    assert _tables(empty_database_url) >= DEPLOYER_TABLES
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO deployments (name, model_name, version, backend, build_id, target, replicas, spec, "
                "state, revision, switch_on_ready, created_by, created_at, updated_at) VALUES ('m-v1-cpu', 'm', 1, "
                "'cpu', 1, 'local', 1, '{}', 'pending', 1, true, 'a', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO endpoints (name, description, settings, created_by, created_at, updated_at) "
                "VALUES ('e', '', '{}', 'a', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    over = text("INSERT INTO endpoint_routes (endpoint_id, deployment_id, weight) VALUES (1, 1, 101)")
    with pytest.raises(DatabaseError), engine.begin() as connection:  # a weight is a percentage
        connection.execute(over)
    migrate.downgrade(empty_database_url, "0003")
    assert not DEPLOYER_TABLES & _tables(empty_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT model_name FROM builds")).scalar_one() == "m"
    engine.dispose()
