"""Fixtures shared by every tier: databases (SQLite or a real PostgreSQL) and the app.

`ATOLL_TEST_DB=postgresql` with `ATOLL_TEST_POSTGRES_URL` (scripts/postgres.sh prints one)
runs the integration tier on PostgreSQL; the default is SQLite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from atoll import migrate
from atoll.db import make_engine

TEST_DB = os.environ.get("ATOLL_TEST_DB", "sqlite")

# MLflow 3 defaults to `sqlite:///mlflow.db` in the working directory: keep any call that
# does not name a server out of the checkout.
os.environ.setdefault(
    "MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp(prefix='atoll-mlflow-')}/mlflow.db"
)


def _postgres_admin_url() -> str:
    url = os.environ.get("ATOLL_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            "ATOLL_TEST_DB=postgresql needs ATOLL_TEST_POSTGRES_URL; run `scripts/postgres.sh start` "
            "(it installs PostgreSQL from Debian packages when root) and export the URL it prints"
        )
    return url


def _create_postgres_database() -> tuple[str, Callable[[], None]]:
    admin_url = make_url(_postgres_admin_url())
    name = f"atoll_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, for migration tests."""
    if TEST_DB == "postgresql":
        url, drop = _create_postgres_database()
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per session; tests get a clean copy (SQLite) or truncation (PG)."""
    if TEST_DB == "postgresql":
        url, drop = _create_postgres_database()
        migrate.upgrade(url)
        yield url
        drop()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = f"sqlite:///{path}"
        migrate.upgrade(url)
        yield url


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> str:
    """A migrated database with no rows, private to this test."""
    if TEST_DB == "postgresql":
        engine = make_engine(migrated_template)
        with engine.begin() as connection:
            tables = connection.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            ).scalars()
            names = ", ".join(f'"{t}"' for t in tables)
            # TRUNCATE does not fire the audit log's row triggers: tests may start clean.
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return migrated_template
    source = Path(make_url(migrated_template).database or "")
    target = tmp_path / "atoll.db"
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database shared by one test module (for tests that build expensive state once)."""
    if TEST_DB == "postgresql":
        url, drop = _create_postgres_database()
        migrate.upgrade(url)
        yield url
        drop()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('module-db') / 'atoll.db'}"
        migrate.upgrade(url)
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()
