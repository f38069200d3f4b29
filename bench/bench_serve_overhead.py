"""Benchmark: what the model server adds per row, against raw ONNX Runtime in-process.

Same fp32 ONNX build of a GradientBoostingClassifier (100 trees, 30 features), requests of
64 rows. Raw: `InferenceSession.run` on 64-row batches in this process, with the session
options `atoll serve` uses (intra-op threads = half the cores). Served: `atoll serve`
(event log ON) driven by `wrk` from a separate process with 64-row OIP v2 requests (JSON),
at 1 connection (no overlap: the full HTTP + JSON cost per call) and at 4 connections
(steady state: parsing overlaps the model and batches merge up to the backend's
max_batch). Per-row time = wall time / rows answered.

Needs `wrk` (`apt-get install -y wrk`; a Python generator otherwise). Run:
`uv run python bench/bench_serve_overhead.py`. Goal: served per-row <= 1.3x raw.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import load, migrated_sqlite, start_atoll, train, write_build  # type: ignore[import-not-found]

BATCH = 64
SECONDS = 8


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


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        model, features = train()
        build = write_build(model, features, scratch / "build")
        rows = np.ascontiguousarray(features[:BATCH])
        raw = raw_per_row_us(build, rows)
        print(f"raw ONNX Runtime, batch {BATCH}, in-process:     {raw:7.2f} us/row")

        server = start_atoll(build, migrated_sqlite(scratch), scratch)
        try:
            server.wait_until("/v2/health/ready")
            body = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "X",
                            "shape": [BATCH, 30],
                            "datatype": "FP32",
                            "data": rows.reshape(-1).tolist(),
                        }
                    ]
                }
            )
            header = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "X",
                            "shape": [BATCH, 30],
                            "datatype": "FP32",
                            "parameters": {"binary_data_size": rows.nbytes},
                        }
                    ]
                }
            ).encode()
            binary_body = header + rows.astype("<f4").tobytes()
            binary_headers = {"Inference-Header-Content-Length": str(len(header))}
            url = server.url + "/v2/models/bench/infer"
            load(url, body, 2, connections=2)  # warm-up
            figures = {}
            for label, payload, headers in (("JSON", body, None), ("binary", binary_body, binary_headers)):
                for connections in (1, 4):
                    result = load(url, payload, SECONDS, connections=connections, headers=headers)
                    per_row = 1e6 / (result.rps * BATCH)
                    figures[(label, connections)] = per_row
                    print(
                        f"atoll serve, {BATCH}-row OIP {label:<6} requests, {connections} conn: {per_row:7.2f} us/row"
                        f" ({result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
                        f" non-2xx {result.errors}, {result.tool})"
                    )
        finally:
            server.stop()
        for (label, connections), per_row in figures.items():
            ratio = per_row / raw
            verdict = "MET" if ratio <= 1.3 else "MISSED"
            print(
                f"  served/raw, {label:<6} at {connections} connection(s): {ratio:5.2f}x   (goal <= 1.3x) {verdict}"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
