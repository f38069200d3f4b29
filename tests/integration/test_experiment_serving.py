"""Serving guardrails per arm from the inference log (latency, error rate): the readout equals the
engine on sums computed by hand over the same requests; requests before the start and on other
endpoints do not count; a much slower arm fails its latency guardrail."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from atoll.db import unit_of_work
from atoll.events import InferenceEvent

from .conftest import Caller
from .experimenting import definition, expose, serve

API = "/api/v1/experiments"


def test_serving_guardrails_come_from_the_inference_log(
    client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
) -> None:
    serve(session_factory, "shop", {"blue": 100, "green": 0})
    serve(session_factory, "elsewhere", {"red": 100})
    metrics = [
        {"name": "conversion", "type": "binary", "event": "purchase"},
        {"name": "latency", "type": "mean", "role": "guardrail", "serving": "latency_ms",
         "higher_is_better": False, "margin": 0.05},
        {"name": "errors", "type": "binary", "role": "guardrail", "serving": "error_rate",
         "higher_is_better": False, "margin": 0.5},
    ]  # fmt: skip
    body = definition("guarded", "shop", {"blue": 50, "green": 50}, "blue", metrics=metrics)
    assert client.post(API, headers=admin.headers, json=body).status_code == 201
    started = client.post(f"{API}/guarded/start", headers=admin.headers).json()
    start = datetime.fromisoformat(started["started_at"])
    rng = np.random.default_rng(4)
    latency = {"blue": rng.normal(20, 3, 300).round(3), "green": rng.normal(35, 3, 300).round(3)}
    status = {
        "blue": np.where(rng.random(300) < 0.02, 503, 200),
        "green": np.where(rng.random(300) < 0.02, 500, 200),
    }
    rows: list[dict[str, Any]] = [
        {"ts": start + timedelta(seconds=1 + i), "endpoint": "shop", "deployment": arm,
         "latency_ms": float(latency[arm][i]), "status": int(status[arm][i])}
        for arm in ("blue", "green") for i in range(300)
    ]  # fmt: skip
    noise: list[dict[str, Any]] = [
        {"ts": start - timedelta(minutes=5), "endpoint": "shop", "deployment": "green", "latency_ms": 1e6,
         "status": 500},
        {"ts": start + timedelta(seconds=5), "endpoint": "elsewhere", "deployment": "red", "latency_ms": 1e6,
         "status": 500},
    ]  # fmt: skip
    with unit_of_work(session_factory) as session:
        session.execute(insert(InferenceEvent), rows + noise)
        expose(
            session,
            split=started["salt"],
            endpoint="shop",
            units={f"u{i}": ("blue", "green")[i % 2] for i in range(200)},
            at=start,
        )

    readout = client.get(f"{API}/guarded/results", headers=admin.headers).json()
    for arm in ("blue", "green"):
        assert readout["sums"]["latency"][arm]["n"] == 300
        assert readout["sums"]["latency"][arm]["sum"] == pytest.approx(float(latency[arm].sum()), rel=1e-12)
        assert readout["sums"]["errors"][arm]["sum"] == int((status[arm] >= 500).sum())
    metrics_out = {m["name"]: m for m in readout["analysis"]["metrics"]}
    lat = metrics_out["latency"]["comparisons"][0]
    assert lat["absolute_lift"] == pytest.approx(
        float(latency["green"].mean() - latency["blue"].mean()), rel=1e-9
    )
    assert lat["verdict"] == "dont_ship"
    assert readout["verdict"] == "lost"


def test_a_serving_metric_takes_no_outcome_event(
    client: TestClient, admin: Caller, session_factory: sessionmaker[Session]
) -> None:
    serve(session_factory, "shop", {"blue": 100, "green": 0})
    bad = {"name": "latency", "type": "binary", "role": "guardrail", "serving": "latency_ms"}
    body = definition("bad", "shop", {"blue": 50, "green": 50}, "blue")
    body["metrics"].append(bad)
    response = client.post(API, headers=admin.headers, json=body)
    assert response.status_code == 422
    assert "latency_ms is a mean metric" in response.text
