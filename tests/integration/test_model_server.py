"""`atoll serve` as a real subprocess over a real ONNX build (GradientBoosting, 30 features).

Checked against ONNX Runtime in-process and scikit-learn: OIP v2 and the four MLflow
formats, metadata, readiness, bad input (422 naming the field), oversized input (413), a
corrupt model (ready false, 503), the event log (batched rows; an outage drops and counts,
never failing a prediction) and the SIGTERM drain.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from atoll.db import make_engine, make_session_factory, unit_of_work
from atoll.events import InferenceEvent
from atoll.registry.builds.manifest import BuildManifest

from .conftest import free_port

N_FEATURES = 30
COLUMNS = [f"c{i}" for i in range(N_FEATURES)]
UNREACHABLE_DB = "postgresql+psycopg://x@127.0.0.1:9/x"


@dataclass(frozen=True)
class Trained:
    model: Any
    onnx: bytes
    rows: np.ndarray


@pytest.fixture(scope="module")
def trained() -> Trained:
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(7)
    features = rng.normal(size=(1500, N_FEATURES)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] - features[:, 2] > 0).astype(np.int64)
    model = GradientBoostingClassifier(n_estimators=50, random_state=0).fit(features, labels)
    onnx = to_onnx(model, features[:1], options={id(model): {"zipmap": False}}).SerializeToString()
    return Trained(model, onnx, rng.normal(size=(40, N_FEATURES)).astype(np.float32))


def write_build(directory: Path, trained: Trained, *, corrupt: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(b"not an onnx model at all" if corrupt else trained.onnx)
    BuildManifest(
        model_name="churn",
        version=3,
        backend="cpu",
        precision="fp32",
        format="onnx",
        runtime_provider="CPUExecutionProvider",
        model_uri="models:/churn/3",
        input_name="X",
        input_columns=COLUMNS,
        n_features=N_FEATURES,
        output_names=["label", "probabilities"],
        label_output="label",
        proba_output="probabilities",
        classes=[0, 1],
    ).save(directory)
    return directory


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


def start_server(
    build: Path, database_url: str, log_path: Path, *args: str, wait_ready: bool = True
) -> Served:
    port = free_port()
    env = {**os.environ, "ATOLL_DATABASE_URL": database_url, "ATOLL_LOG_FORMAT": "text"}
    command = [sys.executable, "-m", "atoll", "serve", str(build), "--port", str(port), *args]
    handle = log_path.open("w")
    process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    served = Served(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    path = "/v2/health/ready" if wait_ready else "/v2/health/live"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"atoll serve exited with {process.returncode}:\n{served.log()}")
        try:
            if httpx.get(served.url + path, timeout=1).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"atoll serve did not answer {path} within 60 s:\n{served.log()}")


def stop_server(served: Served) -> int:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(30)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()
    return served.process.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def run(build: Path, database_url: str, *args: str, wait_ready: bool = True) -> Served:
        served = start_server(
            build, database_url, tmp_path / f"serve-{len(started)}.log", *args, wait_ready=wait_ready
        )
        started.append(served)
        return served

    yield run
    for served in started:
        stop_server(served)


@pytest.fixture(scope="module")
def shared(
    trained: Trained, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One server for the read-only checks, over its own copy of the migrated database."""
    root = tmp_path_factory.mktemp("serve")
    if migrated_template.startswith("sqlite"):
        shutil.copyfile(make_url(migrated_template).database or "", root / "atoll.db")
        url = f"sqlite:///{root / 'atoll.db'}"
    else:
        url = migrated_template
    served = start_server(write_build(root / "build", trained), url, root / "serve.log")
    yield served
    assert stop_server(served) == 0


def in_process(trained: Trained) -> tuple[list[int], np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(trained.onnx, providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {"X": trained.rows})
    return labels.tolist(), proba


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    assert "Traceback" not in response.text
    return body


class TestPredictions:
    def test_oip_infer_matches_onnxruntime_and_scikit_learn(self, shared: Served, trained: Trained) -> None:
        labels, proba = in_process(trained)
        body: dict[str, Any] = {
            "id": "req-1",
            "inputs": [{"name": "X", "shape": [40, 30], "datatype": "FP32", "data": trained.rows.tolist()}],
        }
        response = httpx.post(
            f"{shared.url}/v2/models/churn/infer", json=body, headers={"X-Request-ID": "r-42"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "r-42"
        result = response.json()
        assert result["model_name"] == "churn" and result["model_version"] == "3" and result["id"] == "req-1"
        outputs = {o["name"]: o for o in result["outputs"]}
        assert outputs["label"]["data"] == labels == trained.model.predict(trained.rows).tolist()
        assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["shape"] == [40]
        assert outputs["probabilities"]["shape"] == [40, 2]
        np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (40, 2)), proba, atol=1e-6)
        # flat row-major data, a version path and an output filter
        flat = {**body, "inputs": [{**body["inputs"][0], "data": trained.rows.reshape(-1).tolist()}]}
        flat["outputs"] = [{"name": "label"}]
        again = httpx.post(f"{shared.url}/v2/models/churn/versions/3/infer", json=flat).json()
        assert [o["name"] for o in again["outputs"]] == ["label"]
        assert again["outputs"][0]["data"] == labels

    def test_invocations_in_all_four_mlflow_formats(self, shared: Served, trained: Trained) -> None:
        expected = trained.model.predict(trained.rows).tolist()
        assert expected == in_process(trained)[0]
        data = trained.rows.tolist()
        records = [dict(zip(COLUMNS, row, strict=True)) for row in data]
        shuffled = COLUMNS[::-1]
        bodies = {
            "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": data}},
            "dataframe_split, columns reordered": {
                "dataframe_split": {"columns": shuffled, "data": [row[::-1] for row in data]}
            },
            "dataframe_records": {"dataframe_records": records},
            "instances": {"instances": data},
            "instances as records": {"instances": records},
            "inputs": {"inputs": data},
            "inputs as columns": {"inputs": {c: [row[i] for row in data] for i, c in enumerate(COLUMNS)}},
        }
        for name, body in bodies.items():
            response = httpx.post(f"{shared.url}/invocations", json=body)
            assert response.status_code == 200, (name, response.text)
            assert response.json() == {"predictions": expected}, name

    def test_concurrent_single_rows_are_batched_and_correct(self, shared: Served, trained: Trained) -> None:
        expected = trained.model.predict(trained.rows).tolist()
        before = shared.metric("atoll_serve_batch_requests_count")

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=shared.url) as client:
                responses = await asyncio.gather(
                    *(
                        client.post(
                            "/invocations", json={"dataframe_split": {"columns": COLUMNS, "data": [row]}}
                        )
                        for row in trained.rows.tolist()
                    )
                )
            return [r.json()["predictions"][0] for r in responses]

        assert asyncio.run(burst()) == expected
        batches = shared.metric("atoll_serve_batch_requests_count") - before
        assert batches < len(expected)  # 40 concurrent requests took fewer model calls


class TestDescriptions:
    def test_metadata(self, shared: Served) -> None:
        body = httpx.get(f"{shared.url}/v2/models/churn").json()
        assert body["name"] == "churn" and body["versions"] == ["3"] and body["platform"] == "onnxruntime"
        assert body["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 30]}]
        assert {o["name"]: o["datatype"] for o in body["outputs"]} == {
            "label": "INT64",
            "probabilities": "FP32",
        }
        assert body["parameters"]["runtime_provider"] == "CPUExecutionProvider"
        assert body["parameters"]["input_columns"] == COLUMNS
        assert body["parameters"]["max_batch"] == 32  # the cpu backend's catalog entry
        assert "runtime_provider=CPUExecutionProvider" in shared.log()

    def test_health_and_readiness(self, shared: Served) -> None:
        assert httpx.get(f"{shared.url}/v2/health/live").json() == {"live": True}
        assert httpx.get(f"{shared.url}/v2/health/ready").json() == {"ready": True}
        assert httpx.get(f"{shared.url}/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
        assert httpx.get(f"{shared.url}/ping").status_code == 200
        metrics = httpx.get(f"{shared.url}/metrics").text
        for name in (
            "atoll_serve_request_duration_seconds_bucket",
            "atoll_serve_requests_total",
            "atoll_serve_batch_rows_bucket",
            "atoll_serve_queue_depth",
            "atoll_serve_event_log_dropped_total",
        ):
            assert name in metrics

    def test_unknown_model_and_route_are_404_problems(self, shared: Served) -> None:
        body = assert_problem(httpx.post(f"{shared.url}/v2/models/other/infer", json={}), 404)
        assert "churn" in body["detail"]
        assert_problem(httpx.get(f"{shared.url}/v2/models/churn/versions/9"), 404)
        assert_problem(httpx.get(f"{shared.url}/nowhere"), 404)
        wrong_method = assert_problem(httpx.get(f"{shared.url}/v2/models/churn/infer"), 405)
        assert "POST" in wrong_method["detail"]


class TestBadInput:
    def infer(self, served: Served, tensor: dict[str, Any]) -> httpx.Response:
        base = {"name": "X", "shape": [1, 30], "datatype": "FP32", "data": [0.5] * 30}
        return httpx.post(f"{served.url}/v2/models/churn/infer", json={"inputs": [{**base, **tensor}]})

    def test_wrong_shape_names_the_field_and_the_signature(self, shared: Served) -> None:
        body = assert_problem(self.infer(shared, {"shape": [1, 29], "data": [0.5] * 29}), 422)
        assert body["field"] == "inputs[0].shape"
        assert "[-1, 30]" in body["detail"]
        assert body["expected"]["shape"] == [-1, 30] and body["expected"]["datatype"] == "FP32"
        body = assert_problem(self.infer(shared, {"shape": [2, 30]}), 422)  # data too short
        assert body["field"] == "inputs[0].data"

    def test_wrong_dtype_names_the_field(self, shared: Served) -> None:
        body = assert_problem(self.infer(shared, {"datatype": "FP64"}), 422)
        assert body["field"] == "inputs[0].datatype" and "FP32" in body["detail"]
        body = assert_problem(self.infer(shared, {"data": ["x"] * 30}), 422)
        assert body["field"] == "inputs[0].data"
        row: list[Any] = [0.5] * 30
        row[4] = "high"
        split = {"dataframe_split": {"columns": COLUMNS, "data": [row]}}
        body = assert_problem(httpx.post(f"{shared.url}/invocations", json=split), 422)
        assert body["field"] == "dataframe_split.data[0][4]" and "'c4'" in body["detail"]

    def test_missing_column_names_it(self, shared: Served) -> None:
        columns = [c for c in COLUMNS if c != "c7"]
        split = {"dataframe_split": {"columns": columns, "data": [[0.5] * 29]}}
        body = assert_problem(httpx.post(f"{shared.url}/invocations", json=split), 422)
        assert body["field"] == "dataframe_split.columns"
        assert "missing column 'c7'" in body["detail"] and body["expected"]["columns"] == COLUMNS
        records = {"dataframe_records": [dict.fromkeys(columns, 0.5)]}
        body = assert_problem(httpx.post(f"{shared.url}/invocations", json=records), 422)
        assert body["field"] == "dataframe_records[0].c7"

    def test_unknown_format_and_broken_json(self, shared: Served) -> None:
        body = assert_problem(httpx.post(f"{shared.url}/invocations", json={"rows": []}), 422)
        assert "dataframe_split" in body["detail"]
        assert_problem(httpx.post(f"{shared.url}/invocations", content=b"{not json"), 400)

    def test_oversized_payloads_are_413(self, shared: Served) -> None:
        rows = [[0.5] * 30] * 10_001
        body = assert_problem(httpx.post(f"{shared.url}/invocations", json={"instances": rows}), 413)
        assert "10000" in body["detail"]
        huge = b'{"instances": [], "pad": "' + b"x" * (17 * 1024 * 1024) + b'"}'
        response = httpx.post(
            f"{shared.url}/invocations",
            content=huge,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert_problem(response, 413)
        # the server is still fine
        ok = httpx.post(f"{shared.url}/invocations", json={"instances": [[0.5] * 30]})
        assert ok.status_code == 200


def test_a_corrupt_model_keeps_readiness_false_with_the_reason(
    trained: Trained, database_url: str, tmp_path: Path, serve: Any
) -> None:
    served = serve(write_build(tmp_path / "build", trained, corrupt=True), database_url, wait_ready=False)
    ready = httpx.get(f"{served.url}/v2/health/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and "model.onnx" in ready.json()["reason"]
    body = assert_problem(
        httpx.post(f"{served.url}/v2/models/churn/infer", json={"inputs": [{"name": "X"}]}), 503
    )
    assert "model.onnx" in body["detail"]
    assert_problem(httpx.post(f"{served.url}/invocations", json={"instances": [[0.5] * 30]}), 503)
    assert httpx.get(f"{served.url}/ping").status_code == 503
    assert httpx.get(f"{served.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{served.url}/v2/models/churn").json()["parameters"]["ready"] is False


def _rows(database_url: str) -> list[InferenceEvent]:
    engine = make_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            return list(session.scalars(select(InferenceEvent).order_by(InferenceEvent.id)))
    finally:
        engine.dispose()


def test_inference_events_are_written_in_batches(
    trained: Trained, database_url: str, tmp_path: Path, serve: Any
) -> None:
    served = serve(
        write_build(tmp_path / "build", trained),
        database_url,
        "--endpoint",
        "churn-api",
        "--deployment",
        "churn-v3",
    )
    data = trained.rows.tolist()

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=served.url) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/invocations", json={"instances": [row]}, headers={"X-Atoll-Unit": f"user-{i}"}
                    )
                    for i, row in enumerate(data[:30])
                )
            )
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 30
    # a 422, logged too; its over-long request id is replaced (the column holds 64 characters)
    refused = httpx.post(
        f"{served.url}/invocations", json={"instances": [[0.5] * 29]}, headers={"X-Request-ID": "x" * 200}
    )
    assert refused.status_code == 422 and len(refused.headers["x-request-id"]) == 32
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(rows := _rows(database_url)) < 31:
        time.sleep(0.2)
    assert len(rows) == 31
    ok = [r for r in rows if r.status == 200]
    assert len(ok) == 30 and [r.request_id for r in rows if r.status == 422] == [
        refused.headers["x-request-id"]
    ]
    first = next(r for r in ok if r.features and r.features["c0"] == pytest.approx(data[0][0], rel=1e-6))
    assert (first.endpoint, first.deployment, first.model_name, first.model_version, first.backend) == (
        "churn-api",
        "churn-v3",
        "churn",
        "3",
        "cpu",
    )
    assert first.request_id and first.latency_ms is not None and first.latency_ms > 0
    # the unit the router forwards (X-Atoll-Unit) is logged, where outcome events find it
    assert first.unit_id == "user-0" and sorted(r.unit_id or "" for r in ok) == sorted(
        f"user-{i}" for i in range(30)
    )
    assert [r.unit_id for r in rows if r.status == 422] == [None]
    assert first.features is not None and list(first.features) == COLUMNS
    assert first.prediction == {
        "rows": 1,
        "value": trained.model.predict(trained.rows[:1])[0].item(),
        "proba": pytest.approx(trained.model.predict_proba(trained.rows[:1])[0].tolist(), abs=1e-5),
    }
    assert served.metric("atoll_serve_event_log_batches_total") < 31  # batched inserts
    assert served.metric("atoll_serve_event_log_dropped_total") == 0


def test_a_database_outage_never_fails_a_prediction_and_drops_are_counted(
    trained: Trained, tmp_path: Path, serve: Any
) -> None:
    served = serve(write_build(tmp_path / "build", trained), UNREACHABLE_DB)
    for row in trained.rows.tolist()[:20]:
        response = httpx.post(f"{served.url}/invocations", json={"instances": [row]})
        assert response.status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and served.metric("atoll_serve_event_log_dropped_total") < 20:
        time.sleep(0.2)
    assert served.metric("atoll_serve_event_log_dropped_total") == 20
    assert served.metric("atoll_serve_event_log_written_total") == 0


def test_sigterm_drains_in_flight_requests_and_exits_zero(
    trained: Trained, database_url: str, tmp_path: Path, serve: Any
) -> None:
    served = serve(write_build(tmp_path / "build", trained), database_url)
    rows = np.tile(trained.rows, (25, 1)).tolist()  # 1,000 rows per request: slow-ish
    expected = trained.model.predict(np.asarray(rows, dtype=np.float32)).tolist()

    async def scenario() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=served.url, timeout=60, limits=limits) as client:
            tasks = [
                asyncio.create_task(
                    client.post("/invocations", json={"dataframe_split": {"columns": COLUMNS, "data": rows}})
                )
                for _ in range(50)
            ]
            # wait until the server has received all 50 (in flight or done), then SIGTERM
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                received = await asyncio.to_thread(
                    lambda: (
                        served.metric("atoll_serve_requests_in_flight")
                        + served.metric('atoll_serve_requests_total{route="invocations",status="200"}')
                    )
                )
                if received >= 50:
                    break
                await asyncio.sleep(0.02)
            served.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 50
    assert all(r.json()["predictions"] == expected for r in responses)
    assert served.process.wait(30) == 0
    log = served.log()
    assert "draining" in log and "Traceback" not in log
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(_rows(database_url)) < 50:
        time.sleep(0.1)
    assert len(_rows(database_url)) == 50  # the writer was flushed before exit
