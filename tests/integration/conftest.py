"""Integration fixtures: the real app over a real database, and users with tokens."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from atoll.auth import service as auth_service
from atoll.auth.policy import Role, Scope
from atoll.auth.service import principal_for_user
from atoll.db import make_session_factory, unit_of_work
from atoll.settings import Settings, load_settings
from atoll.web.app import create_app


@dataclass(frozen=True)
class Caller:
    username: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=database_url, log_format="text")


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def app(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(settings, engine=engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


MakeCaller = Callable[..., Caller]


@pytest.fixture
def make_caller(session_factory: sessionmaker[Session]) -> MakeCaller:
    """Create a user with a role and a token with the given scopes (default: all the role has)."""

    def make(username: str, role: Role = Role.admin, scopes: list[Scope] | None = None) -> Caller:
        password = f"{username}-password-123"
        with unit_of_work(session_factory) as session:
            user = auth_service.create_user(
                session, actor=None, username=username, password=password, role=role
            )
            actor = principal_for_user(user, via="test")
            issued = auth_service.create_token(
                session,
                actor=actor,
                name="test",
                scopes=scopes or sorted(actor.scopes),
                expires_in_days=None,
            )
        return Caller(username, password, issued.secret)

    return make


@pytest.fixture
def admin(make_caller: MakeCaller) -> Caller:
    return make_caller("root", Role.admin)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The app served by a real uvicorn on a loopback port, for the CLI and clients."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        pytest.fail("uvicorn did not start within 15 s")
    yield url
    server.should_exit = True
    thread.join(timeout=10)
