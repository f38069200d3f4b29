"""The model server's bare-ASGI prediction path and its metrics: routing, body reading,
decoding, JSON output and the Prometheus exposition, without a model or a socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest

from atoll.context import request_id_from
from atoll.deployer.serving.app import create_app
from atoll.deployer.serving.contract import InputError
from atoll.deployer.serving.payloads import dumps
from atoll.deployer.serving.predict import PredictionRoute, _ClientGone, decode, match_route, read_body
from atoll.deployer.serving.problems import Problem
from atoll.deployer.serving.state import ModelServer, ServerConfig
from atoll.deployer.serving.telemetry import Metrics
from atoll.registry.builds.manifest import BuildManifest


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/invocations", PredictionRoute("invocations")),
        ("/v2/models/churn/infer", PredictionRoute("infer", "churn")),
        ("/v2/models/churn/versions/3/infer", PredictionRoute("infer", "churn", "3")),
        ("/v2/models/a.b-c_d/versions/v10/infer", PredictionRoute("infer", "a.b-c_d", "v10")),
        ("/v2/models//infer", None),
        ("/v2/models/churn/versions//infer", None),
        ("/v2/models/churn/versions/3/extra/infer", None),
        ("/v2/models/churn/other/3/infer", None),
        ("/v2/models/churn", None),
        ("/v2/models/churn/ready", None),
        ("/v2/models/churn/infer/", None),
        ("/invocations/", None),
        ("/v2/health/ready", None),
        ("/metrics", None),
        ("/", None),
    ],
)
def test_match_route(path: str, expected: PredictionRoute | None) -> None:
    assert match_route(path) == expected


def receiver(*messages: dict[str, Any], queue: list[dict[str, Any]] | None = None) -> Any:
    """An ASGI `receive` handing out `messages` (or popping `queue`, which the test can inspect)."""
    pending = queue if queue is not None else list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    return receive


def body_message(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_read_body_joins_chunks() -> None:
    receive = receiver(body_message(b'{"a":', True), body_message(b"", True), body_message(b" 1}"))
    assert asyncio.run(read_body(receive, None, 100)) == b'{"a": 1}'


def test_read_body_refuses_a_declared_or_actual_oversize_with_413() -> None:
    with pytest.raises(InputError) as declared:
        asyncio.run(read_body(receiver(body_message(b"{}")), 101, 100))
    assert declared.value.status == 413 and "100 bytes" in str(declared.value)
    chunks = [body_message(b"x" * 60, True), body_message(b"x" * 60, True), body_message(b"x" * 60)]
    with pytest.raises(InputError) as read:
        asyncio.run(read_body(receiver(*chunks), None, 100))
    assert read.value.status == 413 and read.value.field == "body"


def test_read_body_stops_reading_an_abusive_body() -> None:
    endless = [body_message(b"x" * 100, True) for _ in range(10)]
    receive = receiver(queue=endless)
    with pytest.raises(InputError):
        asyncio.run(read_body(receive, None, 100))
    assert len(endless) == 5  # read 5 x 100 bytes (> 4 x the limit), left the rest


def test_read_body_notices_a_client_that_left() -> None:
    with pytest.raises(_ClientGone):
        asyncio.run(read_body(receiver(body_message(b"{", True), {"type": "http.disconnect"}), None, 100))


def test_decode_json_and_binary_tensor_data() -> None:
    assert decode(b'{"inputs": []}', None) == ({"inputs": []}, None)
    header = b'{"inputs": [1]}'
    assert decode(header + b"\x00\x01", str(len(header)).encode()) == ({"inputs": [1]}, b"\x00\x01")


@pytest.mark.parametrize(
    ("body", "split"),
    [(b"{not json", None), (b"{}", b"0"), (b"{}", b"3"), (b"{}", b"-1"), (b"{}", b"two"), (b'{"a"}', b"4")],
)
def test_decode_refuses_broken_bodies_with_400(body: bytes, split: bytes | None) -> None:
    with pytest.raises(Problem) as refused:
        decode(body, split)
    assert refused.value.status == 400 and refused.value.title == "Invalid JSON"


def test_dumps_writes_numpy_arrays_without_losing_values() -> None:
    proba = np.array([[0.1, 0.9], [1 / 3, 2 / 3]], dtype=np.float32)
    labels = np.array([1, 9_007_199_254_740_993], dtype=np.int64)
    text = np.array(["a", "b"], dtype=object)
    decoded = orjson.loads(dumps({"p": proba.reshape(-1), "l": labels, "b": np.array([True]), "t": text}))
    assert np.array_equal(np.array(decoded["p"], dtype=np.float32), proba.reshape(-1))  # float32 round-trips
    assert (
        decoded["l"] == [1, 9_007_199_254_740_993] and decoded["b"] == [True] and decoded["t"] == ["a", "b"]
    )
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_problem_body_has_the_platform_shape() -> None:
    problem = Problem(422, "Invalid input", "bad", "rid-1", field="inputs[0]", expected={"shape": [-1, 3]})
    assert orjson.loads(problem.body()) == {
        "type": "about:blank",
        "title": "Invalid input",
        "status": 422,
        "detail": "bad",
        "field": "inputs[0]",
        "expected": {"shape": [-1, 3]},
        "request_id": "rid-1",
    }
    response = problem.response()
    assert response.status_code == 422 and response.headers["x-request-id"] == "rid-1"
    assert response.media_type == "application/problem+json"


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exposed:\n{text}")


def test_metrics_expose_prometheus_histograms_counters_and_gauges() -> None:
    metrics = Metrics()
    for seconds in (0.0004, 0.0005, 0.003, 7.0):
        metrics.observe("infer", 200, seconds)
    metrics.observe("infer", 422, 0.001)
    metrics.error("infer", "input")
    metrics.on_batch(64, 2, 0.0002)
    metrics.on_batch(5000, 1, 0.02)
    metrics.set_queue_depth(3)
    metrics.in_flight, metrics.ready = 2, True
    text = generate_latest(metrics.registry).decode()
    latency = "atoll_serve_request_duration_seconds"
    assert sample(text, f'{latency}_bucket{{le="0.0005",route="infer"}}') == 2  # le: value <= bound
    assert sample(text, f'{latency}_bucket{{le="0.001",route="infer"}}') == 3
    assert sample(text, f'{latency}_bucket{{le="5.0",route="infer"}}') == 4
    assert sample(text, f'{latency}_bucket{{le="+Inf",route="infer"}}') == 5
    assert sample(text, f'{latency}_count{{route="infer"}}') == 5
    assert sample(text, f'{latency}_sum{{route="infer"}}') == pytest.approx(7.0049)
    assert sample(text, 'atoll_serve_requests_total{route="infer",status="200"}') == 4
    assert sample(text, 'atoll_serve_requests_total{route="infer",status="422"}') == 1
    assert sample(text, 'atoll_serve_errors_total{kind="input",route="infer"}') == 1
    assert sample(text, 'atoll_serve_batch_rows_bucket{le="64.0"}') == 1
    assert sample(text, 'atoll_serve_batch_rows_bucket{le="4096.0"}') == 1
    assert sample(text, 'atoll_serve_batch_rows_bucket{le="+Inf"}') == 2
    assert sample(text, "atoll_serve_batch_requests_sum") == 3
    assert sample(text, "atoll_serve_queue_depth") == 3
    assert sample(text, "atoll_serve_requests_in_flight") == 2
    assert sample(text, "atoll_serve_model_ready") == 1


def test_prediction_routes_refuse_other_methods_and_answer_503_while_not_ready(tmp_path: Path) -> None:
    server = ModelServer(ServerConfig(build_dir=tmp_path / "no-build"))  # fails: no manifest

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(server))
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return [
                await client.get("/v2/models/x/infer"),
                await client.post(
                    "/invocations", json={"instances": [[1.0]]}, headers={"x-request-id": "r-7"}
                ),
                await client.get("/v2/health/ready"),
            ]

    wrong_method, not_ready, readiness = asyncio.run(calls())
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.headers["content-type"] == "application/problem+json"
    assert not_ready.status_code == 503 and not_ready.headers["x-request-id"] == "r-7"
    assert not_ready.json()["request_id"] == "r-7" and "does not exist" in not_ready.json()["detail"]
    assert readiness.status_code == 503 and readiness.json()["ready"] is False
    exposed = generate_latest(server.metrics.registry).decode()
    assert sample(exposed, 'atoll_serve_requests_total{route="infer",status="405"}') == 1
    assert sample(exposed, 'atoll_serve_requests_total{route="invocations",status="503"}') == 1


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"r-42", True),
        (b"A.b_c-9", True),
        (b"x" * 64, True),
        (b"x" * 65, False),
        (b"", False),
        (None, False),
        (b"abc\n", False),
        (b"a b", False),
        (b"caf\xc3\xa9", False),
        (b"<script>", False),
    ],
)
def test_request_id_from_keeps_only_sane_caller_ids(given: bytes | None, kept: bool) -> None:
    request_id = request_id_from(given)
    if kept:
        assert given is not None and request_id == given.decode()
    else:
        assert len(request_id) == 32 and int(request_id, 16) >= 0  # a fresh uuid4 hex
        assert request_id_from(given) != request_id


def _manifest_only_build(directory: Path) -> Path:
    """A build directory with a manifest (the server knows its model's name) and no model."""
    BuildManifest(
        model_name="churn",
        version=3,
        backend="cpu",
        precision="fp32",
        format="onnx",
        runtime_provider="CPUExecutionProvider",
        model_uri="models:/churn/3",
    ).save(directory)
    return directory


def test_the_starlette_half_answers_problems_with_the_callers_request_id(tmp_path: Path) -> None:
    server = ModelServer(ServerConfig(build_dir=_manifest_only_build(tmp_path / "build")))

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(server))
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return [
                await client.get("/v2/models/other", headers={"x-request-id": "r-404"}),
                await client.get("/nowhere", headers={"x-request-id": "r-route"}),
                await client.get("/nowhere", headers={"x-request-id": "not sane!"}),
            ]

    wrong_model, no_route, insane = asyncio.run(calls())
    for response, request_id in ((wrong_model, "r-404"), (no_route, "r-route")):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"] == request_id and response.json()["request_id"] == request_id
    assert "serves 'churn'" in wrong_model.json()["detail"]
    fresh = insane.json()["request_id"]
    assert len(fresh) == 32 and insane.headers["x-request-id"] == fresh  # a new id, by the same rule


def test_a_crash_on_the_starlette_half_is_a_500_quoting_the_callers_request_id(tmp_path: Path) -> None:
    # A fault that cannot be caused through the routes: the metadata builder raising.
    server = ModelServer(ServerConfig(build_dir=_manifest_only_build(tmp_path / "build")))

    def crash() -> dict[str, Any]:
        raise RuntimeError("boom")

    server.metadata = crash  # type: ignore[method-assign]

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(server), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return await client.get("/v2/models/churn", headers={"x-request-id": "r-500"})

    crashed = asyncio.run(call())
    assert crashed.status_code == 500 and crashed.headers["content-type"] == "application/problem+json"
    assert crashed.json()["request_id"] == "r-500" and crashed.headers["x-request-id"] == "r-500"
    assert "quote request id r-500" in crashed.json()["detail"] and "boom" not in crashed.text
