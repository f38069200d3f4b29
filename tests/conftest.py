"""Fixtures shared by every tier: databases (SQLite or a real PostgreSQL), and the real
platform (`atoll up` in a subprocess) for the e2e and contract tiers.

`ATOLL_TEST_DB=postgresql` with `ATOLL_TEST_POSTGRES_URL` (scripts/postgres.sh prints one)
runs the integration tier on PostgreSQL; the default is SQLite.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
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


ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "e2e-admin-password-4f7c1a"  # a throwaway instance's first admin
START_TIMEOUT_S = (
    300.0  # `atoll up` starts its embedded MLflow first (30 s idle, 2 min on a loaded 2-core machine)
)
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Platform:
    url: str
    admin_username: str
    admin_password: str
    data_dir: Path
    mlflow_url: str
    router_url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _atoll_command() -> list[str]:
    if importlib.util.find_spec("atoll.__main__") is not None:
        return [sys.executable, "-m", "atoll"]
    script = Path(sys.executable).parent / "atoll"
    if not script.exists():
        pytest.fail(f"neither `python -m atoll` nor {script} exists; run `uv sync`")
    return [str(script)]


def _child_env(data_dir: Path, mlflow_port: int, router_port: int) -> dict[str, str]:
    """The parent's environment without its ATOLL_ settings (an unknown one stops start-up)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ATOLL_") or key.startswith("ATOLL_TEST_")
    }
    env.update(
        ATOLL_DATA_DIR=str(data_dir),
        ATOLL_ADMIN_PASSWORD=ADMIN_PASSWORD,
        ATOLL_LOG_FORMAT="text",
        ATOLL_EMBEDDED_MLFLOW_PORT=str(mlflow_port),
        ATOLL_ROUTER_PORT=str(router_port),
        PYTHONUNBUFFERED="1",
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`atoll up` on a free loopback port, in a fresh working and data directory."""
    workdir = tmp_path_factory.mktemp("atoll-up")
    data_dir = workdir / "data"
    port, mlflow_port, router_port = _free_port(), _free_port(), _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "atoll-up.log"
    command = [*_atoll_command(), "up", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=_child_env(data_dir, mlflow_port, router_port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return log_path.read_text(errors="replace")[-8000:]

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"`atoll up` exited with {process.returncode} before serving:\n{output()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`atoll up` did not answer /healthz in {START_TIMEOUT_S:.0f} s:\n{output()}")
            time.sleep(0.1)
        yield Platform(
            url,
            ADMIN_USERNAME,
            ADMIN_PASSWORD,
            data_dir,
            f"http://127.0.0.1:{mlflow_port}",
            f"http://127.0.0.1:{router_port}",
        )
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def base_url(platform: Platform) -> str:
    return platform.url


@pytest.fixture(scope="session")
def admin_password(platform: Platform) -> str:
    return platform.admin_password
