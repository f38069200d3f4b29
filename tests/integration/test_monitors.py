"""Drift monitors through the API, with real runs: the job queue's worker, the fast engine,
real Evidently writing its report, a real local HTTP receiver for alerts.

Inference rows are written straight into `inference_events` (as the model server's batch
writer does), for two deployments where a test splits by deployment: starting model
servers would add minutes and test nothing more of monitoring. Registry versions for the
drift evidence are the cached rows the MLflow sync writes, inserted directly.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from atoll.auth.policy import Role
from atoll.db import unit_of_work, utcnow
from atoll.events import InferenceEvent
from atoll.jobs import Job, Worker, claim
from atoll.monitoring import alerts, runs
from atoll.monitoring.models import MonitorRun
from atoll.registry.models import CachedModel, CachedVersion, Evidence
from tests.integration.conftest import Caller, MakeCaller

SECRET = "a-webhook-secret-of-some-length"
SPEC = {
    "columns": [
        {"name": "x", "kind": "numeric"},
        {"name": "y", "kind": "numeric"},
        {"name": "c", "kind": "categorical"},
    ],
    "drift_share": 0.5,
}


def reference_frame(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(0, 1, rows),
            "y": rng.normal(5, 2, rows),
            "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def window_rows(
    rows: int, *, drift: bool, seed: int, deployment: str = "dep-a", version: str = "1"
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0 if drift else 0.0, 1, rows)
    y = rng.normal(5, 2, rows)
    c = rng.choice(["a", "b", "c"], rows, p=[0.2, 0.3, 0.5] if drift else [0.5, 0.3, 0.2])
    return [
        {
            "endpoint": "scoring",
            "deployment": deployment,
            "backend": "cpu",
            "model_name": "fraud",
            "model_version": version,
            "latency_ms": float(rng.gamma(2.0, 3.0)),
            "status": 200,
            "features": {"x": float(x[i]), "y": float(y[i]), "c": str(c[i])},
            "prediction": {"value": int(x[i] > 0), "rows": 1},
        }
        for i in range(rows)
    ]


@dataclass
class Receiver:
    """A real HTTP server that answers the first `fail_first` deliveries with 500."""

    fail_first: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            failing = len(state.received) <= state.fail_first
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Env:
    client: TestClient
    caller: Caller
    factory: sessionmaker[Session]
    reports: Path

    def worker(self) -> Worker:
        return Worker(
            self.factory,
            {runs.RUN_JOB: runs.run_handler(self.reports), alerts.ALERT_JOB: alerts.deliver},
            lease=timedelta(seconds=30),
        )

    def drain(self) -> None:
        worker = self.worker()
        while worker.run_once():
            pass

    def write(self, rows: list[dict[str, Any]], *, at: datetime | None = None) -> None:
        at = at or utcnow() - timedelta(minutes=20)  # inside the aligned window of a 600 s schedule
        with unit_of_work(self.factory) as session:
            session.execute(insert(InferenceEvent), [{"ts": at, **row} for row in rows])

    def create(self, name: str = "scoring-drift", **fields: Any) -> dict[str, Any]:
        body = {"name": name, "endpoint": "scoring", "spec": SPEC, "window_seconds": 3600, **fields}
        response = self.client.post("/api/v1/monitors", json=body, headers=self.caller.headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def upload(self, name: str, frame: pd.DataFrame, fmt: str = "csv") -> Any:
        buffer = io.BytesIO()
        if fmt == "csv":
            frame.to_csv(buffer, index=False)
        else:
            frame.to_parquet(buffer, index=False)
        return self.client.post(
            f"/api/v1/monitors/{name}/reference",
            files={"file": (f"reference.{fmt}", buffer.getvalue())},
            headers=self.caller.headers,
        )

    def run_now(self, name: str = "scoring-drift") -> dict[str, Any]:
        response = self.client.post(f"/api/v1/monitors/{name}/runs", headers=self.caller.headers)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def run(self, name: str, run_id: int) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/monitors/{name}/runs/{run_id}", headers=self.caller.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def env(
    client: TestClient, app: FastAPI, make_caller: MakeCaller, session_factory: sessionmaker[Session]
) -> Env:
    caller = make_caller("mona", Role.engineer)
    created = client.post("/api/v1/endpoints", json={"name": "scoring"}, headers=caller.headers)
    assert created.status_code == 201, created.text
    with unit_of_work(session_factory) as session:  # the version as the MLflow sync caches it
        model = CachedModel(name="fraud", latest_version=1, version_count=1, mlflow_updated_at=utcnow())
        session.add(model)
        session.flush()
        session.add(
            CachedVersion(
                model_id=model.id, version=1, source="x", status="READY", mlflow_created_at=utcnow()
            )
        )
    return Env(client, caller, session_factory, runs.reports_root(app.state.settings.data_dir))


def columns_by_name(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["column"]: c for c in detail["columns"]}


class TestDriftAndAlerts:
    def test_drift_then_recovery_alert_twice_signed_with_a_retry(self, env: Env, receiver: Receiver) -> None:
        receiver.fail_first = 1
        env.create(webhook_url=receiver.url, webhook_secret=SECRET)
        assert env.upload("scoring-drift", reference_frame()).status_code == 201
        env.write(window_rows(1500, drift=True, seed=1))
        queued = env.run_now()
        env.drain()

        detail = env.run("scoring-drift", queued["run_id"])
        assert (detail["state"], detail["status"], detail["rows"]) == ("succeeded", "drift", 1500)
        columns = columns_by_name(detail)
        assert columns["x"]["drifted"] and columns["c"]["drifted"] and not columns["y"]["drifted"]
        assert columns["x"]["method"] == "wasserstein" and columns["c"]["method"] == "jensenshannon"
        assert detail["alert_rule"] == "evidently" and detail["drift_share"] == pytest.approx(2 / 3)
        assert columns["x"]["histogram"]["labels"] and len(columns["c"]["histogram"]["current"]) == 4
        report = env.client.get(
            f"/api/v1/monitors/scoring-drift/runs/{queued['run_id']}/report", headers=env.caller.headers
        )
        assert report.status_code == 200 and "<html" in report.text[:2000].lower()
        assert "sandbox allow-scripts" in report.headers["content-security-policy"]

        # The first delivery got a 500: the alert job is queued again with backoff, then delivered.
        assert len(receiver.received) == 1
        time.sleep(2.2)
        env.drain()
        assert len(receiver.received) == 2
        headers, body = receiver.received[1]
        assert alerts.verify(SECRET, header=headers["x-atoll-signature"], body=body, now=time.time()) is None
        assert alerts.verify(
            "another-secret-entirely", header=headers["x-atoll-signature"], body=body, now=time.time()
        )
        payload = json.loads(body)
        assert payload["atoll"]["to"] == "drift" and payload["atoll"]["drifted_columns"] == ["c", "x"]
        assert "Drift on endpoint scoring" in payload["text"] and payload["blocks"]

        monitor = env.client.get("/api/v1/monitors/scoring-drift", headers=env.caller.headers).json()
        assert monitor["status"] == "drift" and monitor["has_webhook_secret"]
        assert SECRET not in json.dumps(monitor)
        with unit_of_work(env.factory) as session:
            evidence = session.scalars(select(Evidence).where(Evidence.kind == "drift")).all()
            assert [(e.model_name, e.version, e.status) for e in evidence] == [("fraud", 1, "alert")]

        # Back to normal: the next window is clean, the monitor goes back to ok, one more alert.
        env.write(window_rows(1500, drift=False, seed=2), at=utcnow() - timedelta(seconds=1))
        with unit_of_work(env.factory) as session:  # only the clean rows are in the next window
            session.execute(
                delete(InferenceEvent).where(InferenceEvent.ts < utcnow() - timedelta(seconds=120))
            )
        second = env.run_now()
        env.drain()
        assert env.run("scoring-drift", second["run_id"])["status"] == "ok"
        assert len(receiver.received) == 3
        assert json.loads(receiver.received[2][1])["atoll"]["to"] == "ok"

        metrics = env.client.get("/metrics").text
        assert (
            'atoll_drift_share{arm="",backend="",deployment="",endpoint="scoring",monitor="scoring-drift"}'
            in metrics
        )
        assert "atoll_drift_column_drifted{" in metrics

    def test_split_by_deployment_flags_only_the_drifted_deployment(self, env: Env) -> None:
        env.create(split_by=["deployment"])
        env.upload("scoring-drift", reference_frame())
        env.write(window_rows(1200, drift=False, seed=3, deployment="dep-a"))
        env.write(window_rows(1200, drift=True, seed=4, deployment="dep-b"))
        queued = env.run_now()
        env.drain()
        rows = env.client.get("/api/v1/monitors/scoring-drift/runs", headers=env.caller.headers).json()[
            "items"
        ]
        by_group = {r["group_key"]: r for r in rows}
        assert set(by_group) == {"all", "deployment=dep-a", "deployment=dep-b"}
        assert by_group["deployment=dep-a"]["status"] == "ok"
        assert by_group["deployment=dep-b"]["status"] == "drift"
        assert by_group["deployment=dep-b"]["rows"] == 1200 and by_group["all"]["id"] == queued["run_id"]
        assert (
            env.client.get("/api/v1/monitors/scoring-drift", headers=env.caller.headers).json()["status"]
            == "drift"
        )


class TestBadWindowsAndFailures:
    def test_empty_window_is_no_data_and_no_alert(self, env: Env, receiver: Receiver) -> None:
        env.create(webhook_url=receiver.url, webhook_secret=SECRET)
        env.upload("scoring-drift", reference_frame())
        queued = env.run_now()
        env.drain()
        detail = env.run("scoring-drift", queued["run_id"])
        assert (detail["state"], detail["status"], detail["rows"], detail["columns"]) == (
            "no_data",
            None,
            0,
            [],
        )
        assert receiver.received == []
        assert (
            env.client.get("/api/v1/monitors/scoring-drift", headers=env.caller.headers).json()["status"]
            == "no_data"
        )

    def test_window_missing_a_column_fails_naming_it_and_the_schedule_goes_on(self, env: Env) -> None:
        env.create(schedule_seconds=600)
        env.upload("scoring-drift", reference_frame())
        rows = window_rows(500, drift=False, seed=5)
        for row in rows:
            del row["features"]["y"]
        env.write(rows)
        failed = env.run_now()
        env.drain()
        detail = env.run("scoring-drift", failed["run_id"])
        assert detail["state"] == "failed" and "only in the reference: ['y']" in detail["message"]
        with unit_of_work(env.factory) as session:
            assert runs.schedule_due(session)["queued"] == ["scoring-drift"]
        env.drain()
        with unit_of_work(env.factory) as session:
            states = [r.state for r in session.scalars(select(MonitorRun).order_by(MonitorRun.id))]
        assert states == ["failed", "failed"]  # the scheduled run ran too (same data, same answer)

    def test_constant_and_all_null_columns_are_reported_per_column(self, env: Env) -> None:
        env.create()
        frame = reference_frame()
        frame["y"] = 3.0
        env.upload("scoring-drift", frame)
        rows = window_rows(800, drift=False, seed=6)
        for row in rows:
            row["features"]["x"] = None
        env.write(rows)
        queued = env.run_now()
        env.drain()
        detail = env.run("scoring-drift", queued["run_id"])
        columns = columns_by_name(detail)
        assert detail["state"] == "succeeded", detail["message"]
        assert columns["x"]["status"] == "all_null" and columns["x"]["drifted"] is None
        assert columns["x"]["null_count"] == 800
        assert columns["y"]["status"] == "constant" and "single value" in columns["y"]["detail"]

    def test_evidently_failing_marks_the_run_failed_and_the_schedule_goes_on(self, env: Env) -> None:
        """A real Evidently failure: its `save_html` cannot write where the report goes (a folder
        is in the way), so Evidently raises; the run is failed with its message."""
        env.create(schedule_seconds=600)
        env.upload("scoring-drift", reference_frame())
        env.write(window_rows(600, drift=False, seed=7))
        queued = env.run_now()
        (env.reports / "scoring-drift" / f"run-{queued['run_id']}.html").mkdir(parents=True)
        env.drain()
        detail = env.run("scoring-drift", queued["run_id"])
        assert detail["state"] == "failed"
        assert detail["message"].startswith("Evidently failed: IsADirectoryError")
        with unit_of_work(env.factory) as session:
            runs.schedule_due(session)
        env.drain()
        listed = env.client.get("/api/v1/monitors/scoring-drift/runs", headers=env.caller.headers).json()
        # Newest window first: the manual run's window ends now, the scheduled one at the aligned end.
        assert [r["state"] for r in listed["items"]] == ["failed", "succeeded"]


class TestScheduler:
    def test_scheduler_twice_and_a_dead_worker_give_one_run_per_window(self, env: Env) -> None:
        env.create(schedule_seconds=600)
        env.upload("scoring-drift", reference_frame())
        now = utcnow()
        env.write(window_rows(400, drift=False, seed=8), at=now - timedelta(minutes=20))
        with unit_of_work(env.factory) as session:
            assert runs.schedule_due(session, now=now)["queued"] == ["scoring-drift"]
        with unit_of_work(env.factory) as session:
            assert runs.schedule_due(session, now=now + timedelta(seconds=5))["queued"] == []
        # A worker takes the run and dies before finishing: its lease lapses.
        with unit_of_work(env.factory) as session:
            taken = claim(session, worker_id="dead", lease=timedelta(milliseconds=1), kinds=[runs.RUN_JOB])
            assert taken is not None
        time.sleep(0.05)
        env.drain()
        with unit_of_work(env.factory) as session:
            window_runs = session.scalars(select(MonitorRun)).all()
            jobs = session.scalars(select(Job).where(Job.kind == runs.RUN_JOB)).all()
            assert [(r.group_key, r.state) for r in window_runs] == [("all", "succeeded")]
            assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 2)]
            assert runs.schedule_due(session, now=now + timedelta(seconds=10))["queued"] == []


class TestBadInput:
    def test_reference_lacking_columns_is_refused_listing_them(self, env: Env) -> None:
        env.create()
        response = env.upload("scoring-drift", reference_frame().drop(columns=["y"]), fmt="parquet")
        assert response.status_code == 422
        assert "lacks the spec's columns ['y']" in response.json()["detail"]
        garbage = env.client.post(
            "/api/v1/monitors/scoring-drift/reference",
            files={"file": ("r.parquet", b"PAR1 not really parquet")},
            headers=env.caller.headers,
        )
        assert garbage.status_code == 422 and "not a readable Parquet file" in garbage.json()["detail"]

    def test_method_that_does_not_fit_the_kind_is_refused(self, env: Env) -> None:
        spec = {"columns": [{"name": "x", "kind": "numeric", "method": "chisquare"}]}
        response = env.client.post(
            "/api/v1/monitors",
            json={"name": "bad", "endpoint": "scoring", "spec": spec},
            headers=env.caller.headers,
        )
        assert response.status_code == 422
        assert "'chisquare' does not apply to numeric columns" in json.dumps(response.json())

    def test_unknown_endpoint_and_duplicate_name(self, env: Env) -> None:
        body = {"name": "m", "endpoint": "nowhere", "spec": SPEC}
        response = env.client.post("/api/v1/monitors", json=body, headers=env.caller.headers)
        assert response.status_code == 422 and response.json()["detail"].startswith("endpoint: no endpoint")
        env.create("m")
        again = env.client.post(
            "/api/v1/monitors", json={**body, "endpoint": "scoring"}, headers=env.caller.headers
        )
        assert again.status_code == 409

    def test_run_without_reference_is_409(self, env: Env) -> None:
        env.create()
        response = env.client.post("/api/v1/monitors/scoring-drift/runs", headers=env.caller.headers)
        assert response.status_code == 409 and "upload one first" in response.json()["detail"]

    def test_oversized_reference_is_413(self, env: Env) -> None:
        env.create()
        chunks = (b"x" * 65536 for _ in range(1025))  # just over 64 MiB
        response = env.client.post(
            "/api/v1/monitors/scoring-drift/reference",
            content=chunks,
            headers={**env.caller.headers, "content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 413
        assert "(67,108,864 bytes)" in response.json()["detail"]

    def test_viewer_reads_but_cannot_change(self, env: Env, make_caller: MakeCaller) -> None:
        env.create()
        viewer = make_caller("vic", Role.viewer)
        assert env.client.get("/api/v1/monitors", headers=viewer.headers).json()["total"] == 1
        response = env.client.delete("/api/v1/monitors/scoring-drift", headers=viewer.headers)
        assert response.status_code == 403


class TestLifecycle:
    def test_window_reference_update_delete_and_health(self, env: Env) -> None:
        past = utcnow() - timedelta(hours=3)
        env.write(window_rows(900, drift=False, seed=9), at=past)
        env.write([{**window_rows(1, drift=False, seed=10)[0], "status": 500, "features": None}])
        reference = {
            "source": "window",
            "start": (past - timedelta(minutes=1)).isoformat(),
            "end": (past + timedelta(minutes=1)).isoformat(),
        }
        created = env.create(reference=reference)
        assert created["reference"]["rows"] == 900 and created["reference"]["source"] == "window"
        patched = env.client.patch(
            "/api/v1/monitors/scoring-drift",
            json={"enabled": False, "spec": {"columns": [{"name": "x", "kind": "numeric", "method": "ks"}]}},
            headers=env.caller.headers,
        ).json()
        assert patched["enabled"] is False and patched["features"] == ["x"]
        health = env.client.get(
            "/api/v1/monitors/scoring-drift/health?hours=4&bucket_seconds=3600", headers=env.caller.headers
        ).json()
        points = [p for series in health for p in series["points"]]
        assert sum(p["requests"] for p in points) == 901 and sum(p["errors"] for p in points) == 1
        assert all(p["p50_ms"] is None or p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] for p in points)
        assert (
            env.client.delete("/api/v1/monitors/scoring-drift", headers=env.caller.headers).status_code == 204
        )
        audit = env.client.get("/api/v1/audit?target_type=monitor", headers=env.caller.headers).json()
        actions = sorted(e["action"] for e in audit["items"])
        assert actions == ["monitor.create", "monitor.delete", "monitor.update"]
        assert SECRET not in json.dumps(audit)

    def test_empty_reference_window_is_refused(self, env: Env) -> None:
        start = datetime(2020, 1, 1, tzinfo=UTC)
        body = {
            "name": "m",
            "endpoint": "scoring",
            "spec": SPEC,
            "reference": {
                "source": "window",
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
            },
        }
        response = env.client.post("/api/v1/monitors", json=body, headers=env.caller.headers)
        assert response.status_code == 422 and "logged no successful request" in response.json()["detail"]
        assert env.client.get("/api/v1/monitors", headers=env.caller.headers).json()["total"] == 0


class TestCli:
    def test_create_from_yaml_run_wait_status_list(
        self, env: Env, live_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from typer.testing import CliRunner

        from atoll.cli import app as cli

        monkeypatch.setenv("ATOLL_URL", live_url)
        monkeypatch.setenv("ATOLL_TOKEN", env.caller.token)
        reference_frame().to_parquet(tmp_path / "reference.parquet", index=False)
        spec_file = tmp_path / "monitor.yaml"
        spec_file.write_text(
            "name: cli-drift\nendpoint: scoring\nreference_file: reference.parquet\nspec:\n"
            "  columns:\n    - {name: x, kind: numeric}\n    - {name: c, kind: categorical}\n"
        )
        runner = CliRunner()
        created = runner.invoke(cli, ["monitor", "create", str(spec_file), "--json"])
        assert created.exit_code == 0, created.output
        assert json.loads(created.stdout)["reference"]["rows"] == 2000
        env.write(window_rows(700, drift=True, seed=11))
        worker = env.worker()
        worker.poll_seconds = 0.2
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        try:
            ran = runner.invoke(cli, ["monitor", "run", "cli-drift", "--wait", "--json"])
        finally:
            worker.stop()
            thread.join(10)
        assert ran.exit_code == 1, ran.output  # drift: CI can gate on it
        assert json.loads(ran.stdout)["status"] == "drift"
        status = runner.invoke(cli, ["monitor", "status", "cli-drift", "--json"])
        assert json.loads(status.stdout)["monitor"]["status"] == "drift"
        listed = runner.invoke(cli, ["monitor", "list"])
        assert listed.exit_code == 0 and "cli-drift" in listed.stdout
        missing = runner.invoke(cli, ["monitor", "status", "nope"])
        assert missing.exit_code == 4
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: [unclosed")
        assert runner.invoke(cli, ["monitor", "create", str(bad)]).exit_code == 2


class TestPortal:
    def test_list_monitor_page_run_now_progress_and_banners(self, env: Env) -> None:
        from tests.integration.conftest import sign_in

        env.create(split_by=["deployment"])
        env.upload("scoring-drift", reference_frame())
        env.write(window_rows(900, drift=True, seed=12))
        env.run_now()
        env.drain()
        csrf = sign_in(env.client, env.caller, page="/monitoring")
        listing = env.client.get("/monitoring")
        assert listing.status_code == 200 and 'href="/monitoring/scoring-drift"' in listing.text
        assert "Not built yet" not in listing.text
        page = env.client.get("/monitoring/scoring-drift")
        assert page.status_code == 200
        for marker in (
            'data-testid="drift-timeline"',
            'data-testid="column-row"',
            'class="minihist"',
            'sandbox="allow-scripts"',
            'data-testid="drift-banner"',
            'data-testid="serving-health"',
            "deployment=dep-a",
        ):
            assert marker in page.text, marker
        started = env.client.post("/monitoring/scoring-drift/run", headers={**csrf, "HX-Request": "true"})
        assert 'data-testid="run-progress"' in started.text and "queued" in started.text
        progress_url = started.text.split('hx-get="')[1].split('"')[0]
        env.drain()
        done = env.client.get(progress_url)
        assert 'data-testid="run-done"' in done.text and "drift" in done.text
        refused = env.client.post("/monitoring/scoring-drift/run")  # no CSRF token
        assert refused.status_code == 403
        model_page = env.client.get("/models/fraud")
        assert model_page.status_code == 200 and 'data-testid="drift-banner"' in model_page.text
        endpoint_slot = env.client.get("/endpoints/scoring/drift-banner")  # the endpoint page loads it
        assert endpoint_slot.status_code == 200 and "scoring-drift" in endpoint_slot.text
        quiet = env.client.get("/endpoints/no-monitors-here/drift-banner")
        assert quiet.status_code == 200 and "drift-banner" not in quiet.text
