"""`atoll ab create | list | start | status | stop | conclude` against the real server on a
loopback port, and `Client.send_outcomes` (batches, retries made safe by event ids)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from atoll.abtest import service
from atoll.cli import app
from atoll.client import Client, ClientError
from atoll.db import unit_of_work
from atoll.events import OutcomeEvent

from .conftest import Caller
from .experimenting import definition, expose, serve


def atoll(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok_json(*args: str) -> Any:
    result = atoll(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, live_url: str, admin: Caller) -> None:
    for key in list(os.environ):
        if key.upper().startswith("ATOLL_") and not key.upper().startswith("ATOLL_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("ATOLL_URL", live_url)
    monkeypatch.setenv("ATOLL_TOKEN", admin.token)


def test_the_lifecycle_from_the_command_line(tmp_path: Path, session_factory: sessionmaker[Session]) -> None:
    serve(session_factory, "shop", {"blue": 100, "green": 0})
    file = tmp_path / "exp.json"
    file.write_text(json.dumps(definition("cli-exp", "shop", {"blue": 50, "green": 50}, "blue")))
    assert ok_json("ab", "create", str(file))["state"] == "draft"
    again = atoll("ab", "create", str(file))
    assert again.exit_code == 5  # conflict: the key exists
    assert "already exists" in again.output

    assert ok_json("ab", "start", "cli-exp")["state"] == "running"
    with unit_of_work(session_factory) as session:
        experiment = service.get(session, "cli-exp")
        assert experiment.started_at is not None
        at = experiment.started_at + timedelta(seconds=1)
        expose(session, split=experiment.salt, endpoint="shop", units={"u1": "blue", "u2": "green"}, at=at)
    status = ok_json("ab", "status", "cli-exp")
    assert {p["arm"]: p["units"] for p in status["progress"]} == {"blue": 1, "green": 1}
    human = atoll("ab", "status", "cli-exp")
    assert human.exit_code == 0, human.output
    assert "conversion" in human.output

    listed = ok_json("ab", "list", "--state", "running")
    assert [e["key"] for e in listed["items"]] == ["cli-exp"]
    assert ok_json("ab", "stop", "cli-exp", "--reason", "done")["state"] == "stopped"
    missing = atoll("ab", "start", "nope")
    assert missing.exit_code == 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(definition("bad", "shop", {"blue": 50, "green": 40}, "blue")))
    refused = atoll("ab", "create", str(bad))
    assert refused.exit_code == 2
    assert "sum to 90" in refused.output


def test_send_outcomes_batches_and_a_retry_counts_nothing_twice(
    live_url: str, admin: Caller, session_factory: sessionmaker[Session]
) -> None:
    api = Client(url=live_url, token=admin.token)
    events = [{"unit_id": f"u{i}", "metric": "purchase", "event_id": f"e{i}"} for i in range(25)]
    assert api.send_outcomes(events, batch_size=10) == {"received": 25, "inserted": 25, "duplicates": 0}
    assert api.send_outcomes(events, batch_size=10) == {"received": 25, "inserted": 0, "duplicates": 25}
    fresh = api.send_outcomes([{"unit_id": "x", "metric": "purchase"}])  # an id is given before sending
    assert fresh["inserted"] == 1
    with unit_of_work(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(OutcomeEvent)) == 26
    with pytest.raises(ClientError) as refused:
        api.send_outcomes([{"unit_id": "u", "metric": "purchase", "experiment": "ghost"}])
    assert refused.value.status == 404


def test_send_outcomes_retries_after_an_unreachable_platform(live_url: str, admin: Caller) -> None:
    """The first try dies on the way (a real closed port); the retry on the real server counts once."""
    calls: list[str] = []

    class FlakyClient(Client):
        def post(self, path: str, body: Any = None) -> Any:
            calls.append(path)
            if len(calls) == 1:
                return Client(url="http://127.0.0.1:9", token=self.token, timeout=1).post(path, body)
            return super().post(path, body)

    api = FlakyClient(url=live_url, token=admin.token)
    totals = api.send_outcomes(
        [{"unit_id": "u", "metric": "purchase", "event_id": "r1"}], backoff_seconds=0.01
    )
    assert totals == {"received": 1, "inserted": 1, "duplicates": 0}
    assert len(calls) == 2
    assert httpx.get(f"{live_url}/healthz").status_code == 200
