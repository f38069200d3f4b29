"""Labels from outcome events: target drift and model quality through real runs (the job
queue's worker, the fast engine, real Evidently), with the fixtures of test_monitors.py.

Inference rows are written into `inference_events` with a unit id (as the model server logs
the router's `X-Atoll-Unit`); labels go through the real ingest route
(`POST /api/v1/events/outcomes`) ten minutes after the predictions.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from atoll.db import utcnow
from tests.integration import test_monitors as monitor_tests
from tests.integration.test_monitors import Env, Receiver, columns_by_name, reference_frame, window_rows

env = monitor_tests.env
receiver = monitor_tests.receiver

SPEC = {
    "columns": [
        {"name": "x", "kind": "numeric"},
        {"name": "y", "kind": "numeric"},
        {"name": "c", "kind": "categorical"},
        {"name": "prediction", "kind": "categorical"},
        {"name": "target", "kind": "categorical"},  # target drift: the label column
    ],
    "drift_share": 0.5,
}
LABELS = {"metric": "is_fraud", "task": "classification", "max_drop": {"accuracy": 0.05}}


def labelled_reference(seed: int = 0) -> pd.DataFrame:
    """The reference with the model's prediction and the true label (right 95% of the time)."""
    frame = reference_frame(seed=seed)
    rng = np.random.default_rng(seed + 100)
    frame["prediction"] = (frame["x"] > 0).astype(int)
    flip = rng.random(len(frame)) < 0.05
    frame["target"] = np.where(flip, 1 - frame["prediction"], frame["prediction"])
    return frame


def with_units(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [{**row, "unit_id": f"{prefix}-{i}"} for i, row in enumerate(rows)]


def true_labels(rows: list[dict[str, Any]], *, shifted: bool, seed: int) -> list[float]:
    """Labels as the world gives them: the prediction 95% right, or (label shift) mostly 1."""
    rng = np.random.default_rng(seed)
    predicted = np.array([row["prediction"]["value"] for row in rows])
    if shifted:
        return [float(v) for v in rng.random(len(rows)) < 0.85]
    flip = rng.random(len(rows)) < 0.05
    return [float(v) for v in np.where(flip, 1 - predicted, predicted)]


def send_outcomes(env: Env, rows: list[dict[str, Any]], labels: list[float], *, share: float = 0.9) -> int:
    """Post the labels of the first `share` of the rows (the rest never arrive)."""
    at = (utcnow() - timedelta(minutes=10)).isoformat()
    count = int(len(rows) * share)
    events = [
        {
            "event_id": f"{row['unit_id']}:label",
            "unit_id": row["unit_id"],
            "metric": "is_fraud",
            "value": label,
            "ts": at,
        }
        for row, label in zip(rows[:count], labels[:count], strict=True)
    ]
    response = env.client.post("/api/v1/events/outcomes", json={"events": events}, headers=env.caller.headers)
    assert response.status_code == 200, response.text
    return count


def expected_accuracy(rows: list[dict[str, Any]], labels: list[float], count: int) -> float:
    predicted = [row["prediction"]["value"] for row in rows[:count]]
    return float(skm.accuracy_score(labels[:count], predicted))


class TestTargetDriftAndQuality:
    def test_label_shift_flags_target_drift_reports_the_accuracy_drop_and_alerts(
        self, env: Env, receiver: Receiver
    ) -> None:
        env.create(spec=SPEC, labels=LABELS, webhook_url=receiver.url)
        reference = labelled_reference()
        assert env.upload("scoring-drift", reference).status_code == 201
        rows = with_units(window_rows(1500, drift=False, seed=21), "u")
        env.write(rows)
        labels = true_labels(rows, shifted=True, seed=22)
        labelled = send_outcomes(env, rows, labels)
        queued = env.run_now()
        env.drain()

        detail = env.run("scoring-drift", queued["run_id"])
        assert detail["state"] == "succeeded", detail["message"]
        columns = columns_by_name(detail)
        assert columns["target"]["drifted"] is True and columns["target"]["null_count"] == 1500 - labelled
        assert not any(columns[name]["drifted"] for name in ("x", "y", "c", "prediction"))
        # One drifted column of five is under the drift share: the quality breach sets the status.
        assert detail["drift_share"] == pytest.approx(0.2) and detail["status"] == "degraded"
        quality = detail["quality"]
        assert (quality["status"], quality["breached"], quality["labelled"]) == (
            "breach",
            ["accuracy"],
            labelled,
        )
        assert quality["coverage"] == pytest.approx(labelled / 1500)
        assert quality["current"]["accuracy"] == pytest.approx(expected_accuracy(rows, labels, labelled))
        reference_accuracy = skm.accuracy_score(reference["target"], reference["prediction"])
        assert quality["reference"]["accuracy"] == pytest.approx(reference_accuracy)
        assert quality["drop"]["accuracy"] == pytest.approx(
            reference_accuracy - quality["current"]["accuracy"]
        )
        assert quality["reference_rows"] == 2000

        monitor = env.client.get("/api/v1/monitors/scoring-drift", headers=env.caller.headers).json()
        assert monitor["status"] == "degraded" and monitor["labels"]["metric"] == "is_fraud"
        assert len(receiver.received) == 1
        payload = json.loads(receiver.received[0][1])
        assert "Model quality dropped on endpoint scoring" in payload["text"]
        assert payload["atoll"]["to"] == "degraded" and payload["atoll"]["quality_breaches"] == {
            "all": ["accuracy"]
        }

        metrics = env.client.get("/metrics").text
        line = next(
            m
            for m in metrics.splitlines()
            if m.startswith("atoll_model_quality{") and 'metric="accuracy"' in m
        )
        assert 'endpoint="scoring"' in line and 'monitor="scoring-drift"' in line
        assert float(line.rsplit(" ", 1)[1]) == pytest.approx(quality["current"]["accuracy"])

    def test_quality_per_deployment_and_the_portal_tables(self, env: Env) -> None:
        from tests.integration.conftest import sign_in

        env.create(spec=SPEC, labels=LABELS, split_by=["deployment"])
        env.upload("scoring-drift", labelled_reference())
        good = with_units(window_rows(800, drift=False, seed=31, deployment="dep-a"), "a")
        bad = with_units(window_rows(800, drift=False, seed=32, deployment="dep-b"), "b")
        env.write(good + bad)
        send_outcomes(env, good, true_labels(good, shifted=False, seed=33), share=1.0)
        send_outcomes(env, bad, true_labels(bad, shifted=True, seed=34), share=0.5)
        env.run_now()
        env.drain()

        listed = env.client.get("/api/v1/monitors/scoring-drift/runs", headers=env.caller.headers).json()
        by_group = {r["group_key"]: r for r in listed["items"]}
        assert by_group["deployment=dep-a"]["quality"]["status"] == "ok"
        assert by_group["deployment=dep-a"]["quality"]["coverage"] == 1.0
        assert by_group["deployment=dep-a"]["status"] == "ok"
        assert by_group["deployment=dep-b"]["quality"]["status"] == "breach"
        assert by_group["deployment=dep-b"]["quality"]["coverage"] == 0.5
        assert by_group["deployment=dep-b"]["status"] == "degraded"
        assert by_group["all"]["quality"]["labelled"] == 1200

        sign_in(env.client, env.caller, page="/monitoring")
        page = env.client.get("/monitoring/scoring-drift")
        assert page.status_code == 200
        for marker in ('data-testid="quality-table"', 'data-testid="quality-timeline"', "deployment=dep-b"):
            assert marker in page.text, marker


class TestCli:
    def test_status_shows_the_labels_and_each_runs_quality(
        self, env: Env, live_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from typer.testing import CliRunner

        from atoll.cli import app as cli

        monkeypatch.setenv("ATOLL_URL", live_url)
        monkeypatch.setenv("ATOLL_TOKEN", env.caller.token)
        env.create(spec=SPEC, labels=LABELS)
        env.upload("scoring-drift", labelled_reference())
        rows = with_units(window_rows(600, drift=False, seed=61), "s")
        env.write(rows)
        send_outcomes(env, rows, true_labels(rows, shifted=True, seed=62), share=0.5)
        env.run_now()
        env.drain()
        runner = CliRunner()
        status = runner.invoke(cli, ["monitor", "status", "scoring-drift"], env={"COLUMNS": "400"})
        assert status.exit_code == 0, status.output
        assert "labels: outcome metric is_fraud as target (classification" in status.stdout
        assert "breach (300 labels, 50% labelled); breached: accuracy: accuracy 0." in status.stdout
        assert "(ref 0.9" in status.stdout and "degraded" in status.stdout


class TestWithoutLabels:
    def test_a_metric_that_never_arrives_is_not_enough_labels_with_coverage_zero_and_no_alert(
        self, env: Env, receiver: Receiver
    ) -> None:
        env.create(spec=SPEC, labels={**LABELS, "metric": "never_sent"}, webhook_url=receiver.url)
        env.upload("scoring-drift", labelled_reference())
        rows = with_units(window_rows(900, drift=False, seed=41), "n")
        env.write(rows)
        send_outcomes(env, rows, true_labels(rows, shifted=True, seed=42))  # another metric's events
        queued = env.run_now()
        env.drain()
        detail = env.run("scoring-drift", queued["run_id"])
        assert (detail["state"], detail["status"]) == ("succeeded", "ok")
        quality = detail["quality"]
        assert (quality["status"], quality["labelled"], quality["coverage"]) == ("not_enough_labels", 0, 0.0)
        assert quality["current"] == {} and "0 labelled rows, 30 needed" in quality["message"]
        assert columns_by_name(detail)["target"]["status"] == "all_null"
        assert receiver.received == []

    def test_a_window_reference_takes_its_labels_from_outcome_events(self, env: Env) -> None:
        past = utcnow() - timedelta(hours=3)
        rows = with_units(window_rows(600, drift=False, seed=51), "r")
        env.write(rows, at=past)
        labels = true_labels(rows, shifted=False, seed=52)
        events = [
            {
                "event_id": f"{r['unit_id']}:l",
                "unit_id": r["unit_id"],
                "metric": "is_fraud",
                "value": v,
                "ts": (past + timedelta(minutes=5)).isoformat(),
            }
            for r, v in zip(rows, labels, strict=True)
        ]
        assert (
            env.client.post(
                "/api/v1/events/outcomes", json={"events": events}, headers=env.caller.headers
            ).status_code
            == 200
        )
        reference = {
            "source": "window",
            "start": (past - timedelta(minutes=1)).isoformat(),
            "end": (past + timedelta(minutes=1)).isoformat(),
        }
        created = env.create(spec=SPEC, labels=LABELS, reference=reference)
        assert created["reference"]["rows"] == 600 and "target" in created["reference"]["columns"]
        refused = env.client.patch(
            "/api/v1/monitors/scoring-drift",
            json={"labels": {**LABELS, "task": "ranking"}},
            headers=env.caller.headers,
        )
        assert refused.status_code == 422 and "labels.task" in json.dumps(refused.json())
        removed = env.client.patch(
            "/api/v1/monitors/scoring-drift", json={"labels": None}, headers=env.caller.headers
        )
        assert removed.status_code == 200 and removed.json()["labels"] is None


class TestBadLabelSpecs:
    @pytest.mark.parametrize(
        ("labels", "field", "message"),
        [
            ({"metric": "is_fraud", "task": "ranking"}, "task", "classification"),
            (
                {"metric": "is_fraud", "task": "regression", "max_drop": {"accuracy": 0.1}},
                "labels",
                "do not apply",
            ),
            ({"task": "classification"}, "metric", "Field required"),
        ],
    )
    def test_refused_with_422_naming_the_field(
        self, env: Env, labels: dict[str, Any], field: str, message: str
    ) -> None:
        body = {"name": "bad", "endpoint": "scoring", "spec": SPEC, "labels": labels}
        response = env.client.post("/api/v1/monitors", json=body, headers=env.caller.headers)
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
        text = json.dumps(response.json())
        assert field in text and message in text
        assert env.client.get("/api/v1/monitors", headers=env.caller.headers).json()["total"] == 0
