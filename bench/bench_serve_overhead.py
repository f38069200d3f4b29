"""Benchmark: what the model server adds per row, against raw ONNX Runtime in-process.

Same fp32 ONNX build of a GradientBoostingClassifier (100 trees, 30 features), requests of
64 rows. Raw: `InferenceSession.run` on 64-row batches in this process, with the session
options `atoll serve` uses (intra-op threads = half the cores). Served: `atoll serve`
(event log ON) driven by `wrk` from a separate process with 64-row OIP v2 requests (JSON),
at 1 connection (no overlap: the full HTTP + JSON cost per call) and at 4 connections
(steady state: parsing overlaps the model and batches merge up to the backend's
max_batch). Per-row time = wall time / rows answered.

The HTTP floor: the same uvicorn (httptools, uvloop) running an ASGI app that only reads
the request and answers a constant, under the same load. No Python model server can be
cheaper than that; `served - floor` is what Atoll itself adds per request, and
`floor / raw` says how far the goal is reachable on this machine at all.

Needs `wrk` (`apt-get install -y wrk`; a Python generator otherwise). Run:
`uv run python bench/bench_serve_overhead.py`. Goal: served per-row <= 1.3x raw.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import (  # type: ignore[import-not-found]
    free_port,
    load,
    migrated_sqlite,
    start,
    start_atoll,
    train,
    write_build,
)

BATCH = 64
SECONDS = 8
CONNECTIONS = (1, 4)

FLOOR_APP = """
import sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"outputs": []}'})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False, lifespan="off")
"""


def floor_per_request_us(url_path: str, body: str, scratch: Path) -> dict[int, float]:
    port = free_port()
    server = start(
        "http floor",
        [sys.executable, "-c", FLOOR_APP, str(port)],
        dict(os.environ),
        port,
        scratch / "floor.log",
    )
    try:
        server.wait_until("/")
        load(server.url + url_path, body, 2, connections=2)
        figures = {}
        for connections in CONNECTIONS:
            result = load(server.url + url_path, body, SECONDS, connections=connections)
            figures[connections] = 1e6 / result.rps
            print(
                f"HTTP floor (constant answer), {BATCH}-row JSON, {connections} conn: {figures[connections] / BATCH:7.2f} us/row"
                f" ({result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms)"
            )
        return figures
    finally:
        server.stop()


def raw_per_row_us(build: Path, rows: np.ndarray) -> float:
    import onnxruntime as ort

    from atoll.deployer.server.model import default_threads

    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(build / "model.onnx"), options, providers=["CPUExecutionProvider"])
    for _ in range(200):
        session.run(None, {"X": rows})
    best = float("inf")
    for _ in range(5):  # best of 5 one-second rounds: the machine is shared
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            session.run(None, {"X": rows})
            calls += 1
        best = min(best, (time.perf_counter() - started) / (calls * len(rows)))
    return best * 1e6


def oip_bodies(rows: np.ndarray) -> dict[str, tuple[str | bytes, dict[str, str] | None]]:
    """The same 64 rows as an OIP v2 JSON body and as a binary-tensor body."""
    shape = [len(rows), rows.shape[1]]
    json_body = json.dumps(
        {"inputs": [{"name": "X", "shape": shape, "datatype": "FP32", "data": rows.reshape(-1).tolist()}]}
    )
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ]
        }
    ).encode()
    binary_headers = {"Inference-Header-Content-Length": str(len(header))}
    return {"JSON": (json_body, None), "binary": (header + rows.astype("<f4").tobytes(), binary_headers)}


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    path = "/v2/models/bench/infer"
    try:
        model, features = train()
        build = write_build(model, features, scratch / "build")
        rows = np.ascontiguousarray(features[:BATCH])
        bodies = oip_bodies(rows)
        raw = raw_per_row_us(build, rows)
        print(
            f"raw ONNX Runtime, batch {BATCH}, in-process: {raw:7.2f} us/row ({raw * BATCH:.0f} us per call)"
        )
        floor = floor_per_request_us(path, str(bodies["JSON"][0]), scratch)

        server = start_atoll(build, migrated_sqlite(scratch), scratch)
        served: dict[tuple[str, int], float] = {}
        try:
            server.wait_until("/v2/health/ready")
            load(server.url + path, bodies["JSON"][0], 2, connections=2)  # warm-up
            for label, (payload, headers) in bodies.items():
                for connections in CONNECTIONS:
                    result = load(
                        server.url + path, payload, SECONDS, connections=connections, headers=headers
                    )
                    served[(label, connections)] = 1e6 / result.rps
                    print(
                        f"atoll serve, {BATCH}-row OIP {label:<6}, {connections} conn: {1e6 / (result.rps * BATCH):7.2f} us/row"
                        f" ({result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
                        f" non-2xx {result.errors}, {result.tool})"
                    )
        finally:
            server.stop()
        for connections in CONNECTIONS:
            print(f"  HTTP floor / raw at {connections} conn: {floor[connections] / BATCH / raw:5.2f}x")
        for (label, connections), per_request in served.items():
            ratio = per_request / BATCH / raw
            verdict = "MET" if ratio <= 1.3 else "MISSED"
            added = per_request - floor[connections] - raw * BATCH
            print(
                f"  served / raw, {label:<6} at {connections} conn: {ratio:5.2f}x (goal <= 1.3x) {verdict};"
                f" Atoll adds {added:5.0f} us per request beyond the floor and the model"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
