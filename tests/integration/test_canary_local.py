"""Canary, shadow and alias-following on the local target, with real model servers and the real router.

One platform per module (tests/integration/deploying.py): MLflow, two versions built for
cpu, the supervisor running `atoll serve`, `atoll router` as a process and a worker thread
running the rollout, canary and alias-moved jobs. Four model servers serve the module:
v1 (stable), v2 (a good candidate), v2 started with the test fault `--fault-rate` (a bad
one), and a deployment that follows an alias.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner, Result

from atoll.audit import AuditEvent
from atoll.cli import app
from atoll.db import unit_of_work
from atoll.deployer import canary
from atoll.deployer.models import ShadowComparison

from .conftest import sign_in
from .deploying import Platform, infer_body, platform

__all__ = ["platform"]

ENDPOINT = "progressive"
STABLE, GOOD, FAULTY = "prog-stable", "prog-good", "prog-faulty"
ROW = [[0.5, -0.2, 0.1, 0.3]]


@pytest.fixture(scope="module")
def deployed(platform: Platform) -> Platform:
    """v1 serving the endpoint; v2 and a faulty v2 behind it at 0 %, all available."""
    platform.deploy(1, endpoint=ENDPOINT, name=STABLE)
    platform.deploy(2, endpoint=ENDPOINT, name=GOOD, switch=False)
    platform.deploy(2, endpoint=ENDPOINT, name=FAULTY, switch=False, fault_rate=0.5)
    for name in (STABLE, GOOD, FAULTY):
        platform.wait_state(name, "available")
    assert platform.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()["active"] == STABLE
    return platform


class Load:
    """Requests at a steady rate through the router, in a thread, until stopped."""

    def __init__(self, platform: Platform, rate: float = 40.0) -> None:
        self.url = f"{platform.router_url}/endpoints/{ENDPOINT}/v2/models/{platform.model}/infer"
        self.rate = rate
        self.results: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = infer_body(ROW)
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(self.url, json=body)
                    self.results.append((answer.status_code, answer.headers.get("x-atoll-deployment")))
                except httpx.HTTPError:
                    self.results.append((0, None))
                self._stop.wait(1.0 / self.rate)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_canary(platform: Platform, *states: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = platform.call("GET", f"/api/v1/endpoints/{ENDPOINT}/canary").json()
        if found.get("state") in states:
            return found
        time.sleep(0.3)
    pytest.fail(f"canary not {states} within {timeout} s: {found}")


def history(platform: Platform) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = platform.call("GET", f"/api/v1/endpoints/{ENDPOINT}/history").json()[
        "items"
    ]
    return items


class TestRefusals:
    def post(self, platform: Platform, **body: Any) -> httpx.Response:
        return platform.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary", json={"to": GOOD, **body})

    def test_bad_steps_and_strangers_are_422_naming_the_field_and_write_nothing(
        self, deployed: Platform
    ) -> None:
        for steps, words in (([5, 50], "must be 100"), ([50, 25, 100], "must increase"), ([0, 100], "has 0")):
            answer = self.post(deployed, steps=steps)
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["field"] == "steps" and words in answer.json()["detail"]
        stranger = self.post(deployed, to="not-behind-it")
        assert stranger.status_code == 422 and stranger.json()["field"] == "to"
        assert "is not behind endpoint 'progressive'" in stranger.json()["detail"]
        assert self.post(deployed, max_error_rate=2).status_code == 422
        assert deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}/canary").status_code == 404
        assert deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()["traffic_owner"] is None
        viewer = deployed.api.post(
            f"/api/v1/endpoints/{ENDPOINT}/canary", headers=deployed.viewer.headers, json={"to": GOOD}
        )
        assert viewer.status_code == 403


def test_a_canary_completes_step_by_step_under_load(deployed: Platform) -> None:
    body = {"to": GOOD, "steps": [30, 60, 100], "hold_seconds": 1, "min_requests": 5, "reason": "v2"}
    with Load(deployed) as load:
        started = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary", json=body)
        assert started.status_code == 201, started.text
        canary = started.json()
        assert canary["state"] == "running" and canary["stable"] == STABLE
        second = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary", json={"to": FAULTY})
        assert second.status_code == 409 and f"canary:{canary['id']}" in second.json()["detail"]
        split = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/switch", json={"to": STABLE})
        assert split.status_code == 409  # nothing else changes the weights meanwhile
        done = wait_canary(deployed, "succeeded", "failed")
        time.sleep(1.5)  # the router's table catches up (refresh 0.5 s)
    assert done["state"] == "succeeded", done
    assert done["weight"] == 100 and done["candidate_reading"]["requests"] >= 5
    assert done["candidate_reading"]["errors"] == 0
    failed = [r for r in load.results if r[0] != 200]
    assert not failed, failed[:5]
    served = [d for _, d in load.results]
    assert served[0] == STABLE and served[-1] == GOOD and GOOD in served[: len(served) // 2 + 20]
    changes = [h for h in history(deployed) if h["kind"] == "canary"][::-1]
    assert [c["to_weights"][GOOD] for c in changes] == [30, 60, 100]
    assert all(c["job_id"] in done["job_ids"] for c in changes)
    endpoint = deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()
    assert endpoint["active"] == GOOD and endpoint["traffic_owner"] is None


def test_an_injected_error_rate_rolls_the_canary_back_within_one_step(deployed: Platform) -> None:
    """Runs after the one above: GOOD serves 100 %, FAULTY (v2 with --fault-rate 0.5) is the candidate."""
    body = {"to": FAULTY, "steps": [50, 100], "hold_seconds": 30, "min_requests": 10}
    with Load(deployed) as load:
        started = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary", json=body)
        assert started.status_code == 201, started.text
        done = wait_canary(deployed, "succeeded", "failed", timeout=60)
        time.sleep(1.5)
        after = len(load.results)
        time.sleep(1.0)
    assert done["state"] == "failed", done
    assert done["step"] == 0  # within the first step, long before its 30 s hold
    assert done["reason"].startswith(f"step 1 (50 % to {FAULTY}): error rate ")
    assert "> 0.050" in done["reason"] and "answered 5xx" in done["reason"]
    assert done["candidate_reading"]["error_rate"] > 0.05
    endpoint = deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()
    assert endpoint["active"] == GOOD and endpoint["traffic_owner"] is None
    rollback = history(deployed)[0]
    assert rollback["kind"] == "canary" and rollback["to_weights"] == {STABLE: 0, GOOD: 100, FAULTY: 0}
    assert "failed: step 1" in rollback["reason"] and "error rate" in rollback["reason"]
    assert all(status == 200 and served == GOOD for status, served in load.results[after:])
    events = deployed.call("GET", f"/api/v1/deployments/{FAULTY}/events").json()["events"]
    assert any(e["reason"] == "CanaryFailed" and e["type"] == "Warning" for e in events)
    aborted = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary/abort", json={})
    assert aborted.status_code == 409 and "is failed, not running" in aborted.json()["detail"]


def test_abort_sends_everything_back_to_stable_and_is_audited(deployed: Platform) -> None:
    body = {"to": STABLE, "steps": [10, 100], "hold_seconds": 600, "min_requests": 1000}
    started = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary", json=body).json()
    wait_step = time.monotonic() + 30
    while deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}/canary").json()["step"] < 0:
        assert time.monotonic() < wait_step
        time.sleep(0.2)
    aborted = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary/abort", json={"reason": "by hand"})
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["state"] == "aborted" and "by hand" in aborted.json()["reason"]
    endpoint = deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()
    assert endpoint["active"] == GOOD and endpoint["traffic_owner"] is None
    with unit_of_work(deployed.factory) as session:
        actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == ENDPOINT)))
    assert {"canary.start", "canary.abort", "endpoint.canary"} <= actions
    assert started["id"] == aborted.json()["id"]


def _raw(platform: Platform, request_id: str) -> httpx.Response:
    url = f"{platform.router_url}/endpoints/{ENDPOINT}/v2/models/{platform.model}/infer"
    return httpx.post(url, json=infer_body(ROW), headers={"x-request-id": request_id})


def _comparisons(platform: Platform, candidate: str) -> list[ShadowComparison]:
    with unit_of_work(platform.factory) as session:
        rows = session.scalars(select(ShadowComparison).where(ShadowComparison.candidate == candidate))
        found = list(rows)
        session.expunge_all()
        return found


@pytest.fixture
def no_shadow(deployed: Platform) -> Iterator[Platform]:
    yield deployed
    deployed.call("DELETE", f"/api/v1/endpoints/{ENDPOINT}/shadow")


def _settled(platform: Platform, deployment: str, timeout: float = 10.0) -> None:
    """Wait until the router sends every request to `deployment` (its table lags by ≤ 0.5 s here)."""
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < 10:
        assert time.monotonic() < deadline, f"the router does not send everything to {deployment}"
        served = _raw(platform, "settle").headers.get("x-atoll-deployment")
        in_a_row = in_a_row + 1 if served == deployment else 0


def test_shadow_never_changes_the_response(no_shadow: Platform) -> None:
    platform = no_shadow
    _settled(platform, GOOD)  # the abort before this test sent everything back to GOOD
    baseline = [_raw(platform, f"same-{i}") for i in range(10)]
    for candidate in (STABLE, FAULTY):  # v1 answers differently; the faulty one fails half its requests
        started = platform.call(
            "POST", f"/api/v1/endpoints/{ENDPOINT}/shadow", json={"to": candidate, "share": 1.0}
        )
        assert started.status_code == 201, started.text
        again = platform.call(
            "POST", f"/api/v1/endpoints/{ENDPOINT}/shadow", json={"to": candidate, "share": 1}
        )
        assert again.status_code == 409
        time.sleep(1.5)  # the router's table picks the shadow up
        mirrored = [_raw(platform, f"same-{i}") for i in range(10)]
        for before, after in zip(baseline, mirrored, strict=True):
            assert after.status_code == before.status_code == 200
            assert after.content == before.content
            assert after.headers["x-atoll-deployment"] == GOOD
        deadline = time.monotonic() + 10
        while len(_comparisons(platform, candidate)) < 10 and time.monotonic() < deadline:
            time.sleep(0.3)
        rows = _comparisons(platform, candidate)
        assert len(rows) >= 10 and {r.primary_deployment for r in rows} == {GOOD}
        summary = platform.call("GET", f"/api/v1/endpoints/{ENDPOINT}/shadow").json()["summary"]
        if candidate == FAULTY:
            assert any(r.candidate_status == 500 for r in rows) and summary["failed"] >= 1
            assert all(r.agreement == 1.0 for r in rows if r.candidate_status == 200)  # same v2 model
        else:
            assert all(r.candidate_status == 200 and r.kind == "label" for r in rows)
            assert summary["compared"] >= 10 and summary["max_abs_diff"] > 0  # v1's probabilities differ
        stopped = platform.call("DELETE", f"/api/v1/endpoints/{ENDPOINT}/shadow")
        assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    bad = platform.call("POST", f"/api/v1/endpoints/{ENDPOINT}/shadow", json={"to": GOOD, "share": 0.5})
    assert bad.status_code == 422 and "already serves 100 %" in bad.json()["detail"]
    share = platform.call("POST", f"/api/v1/endpoints/{ENDPOINT}/shadow", json={"to": STABLE, "share": 0})
    assert share.status_code == 422


def _rolled_to(platform: Platform, deployment: str, version: int) -> None:
    """Wait (60 s at most) until `deployment` serves `version` and is available again."""
    deadline = time.monotonic() + 60
    while platform.call("GET", f"/api/v1/deployments/{deployment}").json()["version"] != version:
        assert time.monotonic() < deadline, f"{deployment} did not roll to v{version}"
        time.sleep(0.3)
    platform.wait_state(deployment, "available")


def test_a_deployment_following_an_alias_rolls_when_the_alias_moves(deployed: Platform) -> None:
    platform = deployed
    moved = platform.call("PUT", f"/api/v1/models/{platform.model}/aliases/staging", json={"version": 1})
    assert moved.status_code == 200, moved.text
    created = platform.call(
        "POST",
        "/api/v1/deployments",
        json={"model": platform.model, "follow": "staging", "backend": "cpu", "endpoint": "following"},
    )
    assert created.status_code == 202, created.text
    follower = created.json()
    assert follower["version"] == 1 and follower["follow"] == f"{platform.model}@staging"
    platform.wait_state(follower["name"], "available")
    assert platform.infer("following").json()["model_version"] == "1"

    moved = platform.call("PUT", f"/api/v1/models/{platform.model}/aliases/staging", json={"version": 2})
    assert moved.status_code == 200, moved.text
    _rolled_to(platform, follower["name"], 2)
    answer = platform.infer("following")
    assert answer.status_code == 200 and answer.json()["model_version"] == "2"
    events = platform.call("GET", f"/api/v1/deployments/{follower['name']}/events").json()["events"]
    assert any("staging moved from v1 to v2" in e["message"] for e in events if e["reason"] == "Updated")

    rolled = platform.call(
        "POST", f"/api/v1/models/{platform.model}/aliases/staging/rollback", json={"reason": "v2 is bad"}
    )
    assert rolled.status_code == 200, rolled.text
    _rolled_to(platform, follower["name"], 1)  # with the alias
    assert platform.infer("following").json()["model_version"] == "1"

    unfollowable = platform.call(
        "POST",
        "/api/v1/deployments",
        json={"model": platform.model, "follow": "nowhere", "backend": "cpu", "name": "follows-nothing"},
    )
    assert unfollowable.status_code == 404 and unfollowable.json()["field"] == "follow"


def test_the_endpoint_pages_fragments_show_the_canary_and_the_shadow(deployed: Platform) -> None:
    """Runs after the tests above: the last canary was aborted, the last shadow stopped."""
    with TestClient(deployed.app) as client:
        csrf = sign_in(client, deployed.admin, page="/deployments")
        canary = client.get(f"/endpoints/{ENDPOINT}/canary")
        assert canary.status_code == 200 and 'data-testid="canary"' in canary.text
        assert "aborted" in canary.text and "by hand" in canary.text
        assert 'data-testid="canary-abort"' not in canary.text  # only a running canary has the button
        shadow_page = client.get(f"/endpoints/{ENDPOINT}/shadow")
        assert shadow_page.status_code == 200 and 'data-testid="shadow-summary"' in shadow_page.text
        assert 'data-testid="shadow-start"' in shadow_page.text  # stopped: the form to start one again
        started = client.post(
            f"/endpoints/{ENDPOINT}/shadow", data={"to": STABLE, "share": "0.25"}, headers=csrf
        )
        assert started.status_code == 200 and "25 % of requests mirrored" in started.text
        refused = client.post(
            f"/endpoints/{ENDPOINT}/shadow", data={"to": STABLE, "share": "half"}, headers=csrf
        )
        assert 'data-testid="refused"' in refused.text and "is not a number" in refused.text
        stopped = client.post(f"/endpoints/{ENDPOINT}/shadow/stop", headers=csrf)
        assert stopped.status_code == 200 and "stopped" in stopped.text
        no_csrf = client.post(f"/endpoints/{ENDPOINT}/shadow/stop")
        assert no_csrf.status_code == 403
        assert client.get("/endpoints/following/canary").text == ""  # nothing to show: an empty slot
        assert client.get("/endpoints/no-such-endpoint/shadow").text == ""


def test_the_cli_reads_and_refuses_with_the_readmes_exit_codes(
    deployed: Platform, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in list(os.environ):
        if key.upper().startswith("ATOLL_") and not key.upper().startswith("ATOLL_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("ATOLL_URL", deployed.api_url)
    monkeypatch.setenv("ATOLL_TOKEN", deployed.admin.token)

    def atoll(*args: str) -> Result:
        return CliRunner().invoke(app, list(args), terminal_width=200)

    status = atoll("canary", "status", ENDPOINT, "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["state"] == "aborted"
    bad_steps = atoll("canary", "start", ENDPOINT, "--to", STABLE, "--steps", "5,50", "--json")
    assert bad_steps.exit_code == 2 and json.loads(bad_steps.stdout)["field"] == "steps"
    bad_hold = atoll("canary", "start", ENDPOINT, "--to", STABLE, "--hold", "soon")
    assert bad_hold.exit_code == 2 and "not a duration" in bad_hold.output
    missing = atoll("canary", "status", "following")
    assert missing.exit_code == 4 and "has had no canary" in missing.output
    started = atoll("shadow", "start", ENDPOINT, "--to", STABLE, "--share", "0.5", "--json")
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout)["share"] == 0.5
    again = atoll("shadow", "start", ENDPOINT, "--to", STABLE, "--share", "0.5")
    assert again.exit_code == 5 and "already mirrors" in again.output
    stopped = atoll("shadow", "stop", ENDPOINT)
    assert stopped.exit_code == 0 and "stopped" in stopped.output


def test_a_canary_whose_job_dies_fails_and_sends_everything_back_to_stable(deployed: Platform) -> None:
    before = deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()["active"]
    other = STABLE if before == GOOD else GOOD
    body = {"to": other, "steps": [10, 100], "hold_seconds": 600, "min_requests": 1000}
    started = deployed.call("POST", f"/api/v1/endpoints/{ENDPOINT}/canary", json=body)
    assert started.status_code == 201, started.text
    wait_step = time.monotonic() + 30
    while deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}/canary").json()["step"] < 0:
        assert time.monotonic() < wait_step
        time.sleep(0.2)
    # What the worker does once the canary's job has failed its last attempt (a job that
    # fails five times with backoff cannot be caused quickly here; test_jobs covers the hook).
    with unit_of_work(deployed.factory) as session:
        canary.on_job_dead(session, {"canary_id": started.json()["id"]}, "OperationalError: db gone")
    found = deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}/canary").json()
    assert found["state"] == "failed" and "OperationalError: db gone" in found["reason"]
    endpoint = deployed.call("GET", f"/api/v1/endpoints/{ENDPOINT}").json()
    assert endpoint["active"] == before and endpoint["traffic_owner"] is None
    assert {r["deployment"]: r["weight"] for r in endpoint["routes"]}[other] == 0
    assert history(deployed)[0]["kind"] == "canary" and "failed" in history(deployed)[0]["reason"]
