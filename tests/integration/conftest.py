"""Integration fixtures: the real app over a real database, and users with tokens."""

from __future__ import annotations

import re
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
from pydantic import SecretStr
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


def sign_in(client: TestClient, caller: Caller, page: str = "/") -> dict[str, str]:
    """Sign in through the login form (with its CSRF cookie); returns the session's htmx
    CSRF header, read from the page as a browser would."""
    form = client.get("/login")
    login_csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert login_csrf is not None
    signed_in = client.post(
        "/login",
        data={"username": caller.username, "password": caller.password, "csrf_token": login_csrf.group(1)},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    session_csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', client.get(page).text)
    assert session_csrf is not None
    return {"X-CSRF-Token": session_csrf.group(1)}


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
    yield from _serve(app)


def _serve(app: FastAPI) -> Iterator[str]:
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


# --- a real MLflow tracking server ------------------------------------------------------

WEBHOOK_SECRET = "test-webhook-secret-0123456789"


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `mlflow server` subprocess for the session (about 30 s to start on an empty store).

    Webhooks may call back to loopback so the receiver can be tested end to end.
    """
    from cryptography.fernet import Fernet

    from atoll.registry.mlflow.embedded import EmbeddedMlflow

    server = EmbeddedMlflow(
        tmp_path_factory.mktemp("mlflow"),
        free_port(),
        extra_env={
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "MLFLOW_WEBHOOK_CACHE_TTL": "1",  # MLflow caches the webhook list per event
        },
    )
    uri = server.start()
    yield uri
    server.stop()


@pytest.fixture
def registry_settings(settings: Settings, mlflow_uri: str) -> Settings:
    return settings.model_copy(
        update={"mlflow_tracking_uri": mlflow_uri, "mlflow_webhook_secret": SecretStr(WEBHOOK_SECRET)}
    )


@pytest.fixture
def registry_app(registry_settings: Settings, engine: Engine) -> FastAPI:
    return create_app(registry_settings, engine=engine)


@pytest.fixture
def registry_client(registry_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(registry_app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def log_model(mlflow_uri: str) -> Callable[..., str]:
    """Train a tiny scikit-learn model, log it with metrics to a new run; returns the run id."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def log(metrics: dict[str, float] | None = None, seed: int = 0) -> str:
        mlflow.set_tracking_uri(mlflow_uri)
        rng = np.random.default_rng(seed)
        features = rng.normal(size=(60, 4))
        labels = (features[:, 0] + rng.normal(scale=0.3, size=60) > 0).astype(int)
        model = LogisticRegression().fit(features, labels)
        with mlflow.start_run() as run:
            mlflow.log_metrics(metrics or {"auc": 0.9})
            mlflow.sklearn.log_model(
                model, name="model", input_example=features[:2], pip_requirements=["scikit-learn"]
            )
        return str(run.info.run_id)

    return log


@pytest.fixture
def live_registry_url(registry_app: FastAPI) -> Iterator[str]:
    yield from _serve(registry_app)
