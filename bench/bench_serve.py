"""Benchmark: `atoll serve` against `mlflow models serve`, same model, same payload.

The model: a scikit-learn GradientBoostingClassifier (100 trees, 30 features). Atoll serves
its fp32 ONNX build (cpu backend, event log ON, writing to a migrated SQLite database);
MLflow serves the same fitted estimator saved with `mlflow.sklearn.save_model`
(`mlflow models serve --env-manager local`). Load: `wrk` (a separate process, loopback
only), 32 connections, one-row requests in MLflow's `dataframe_split` format to
`/invocations` on both, a warm-up, then a fixed duration each. A third run serves Atoll
with batching off (`--max-batch 1`) to show what micro-batching buys at concurrency 32.
(With this model, little: a one-row call takes ~12 us, so the server runs most requests
inline on the event loop (see `batching.py`) and merging saves only call overhead; it pays
where a call has a large fixed cost, such as a GPU kernel launch.)

Needs: `wrk` on PATH (`apt-get install -y wrk`); without it a Python load generator
(httpx, in a separate process) is used and says so; its own CPU use caps what it can show.
Run: `uv run python bench/bench_serve.py`. Goal: Atoll >= 3x MLflow's req/s and <= 0.5x
its p99. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

N_FEATURES = 30
COLUMNS = [f"c{i}" for i in range(N_FEATURES)]
CONNECTIONS = 32
WARMUP_S = 3
DURATION_S = int(os.environ.get("BENCH_SECONDS", "15"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train() -> tuple[Any, np.ndarray]:
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, N_FEATURES)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] - features[:, 2] > 0).astype(np.int64)
    return GradientBoostingClassifier(random_state=0).fit(features, labels), features


def write_build(model: Any, features: np.ndarray, directory: Path) -> Path:
    """An fp32 cpu build: model.onnx + build.json (the contract of atoll.registry.builds.manifest)."""
    from skl2onnx import to_onnx

    from atoll.registry.builds.manifest import BuildManifest

    directory.mkdir(parents=True, exist_ok=True)
    onnx = to_onnx(model, features[:1], options={id(model): {"zipmap": False}})
    (directory / "model.onnx").write_bytes(onnx.SerializeToString())
    BuildManifest(
        model_name="bench",
        version=1,
        backend="cpu",
        precision="fp32",
        format="onnx",
        runtime_provider="CPUExecutionProvider",
        model_uri="models:/bench/1",
        input_name="X",
        input_columns=COLUMNS,
        n_features=N_FEATURES,
        output_names=["label", "probabilities"],
        label_output="label",
        proba_output="probabilities",
        classes=[0, 1],
    ).save(directory)
    return directory


def migrated_sqlite(directory: Path) -> str:
    from atoll import migrate

    url = f"sqlite:///{directory / 'atoll.db'}"
    migrate.upgrade(url)
    return url


@dataclass
class Process:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_until(self, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} did not answer {path} in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> Process:
    handle = log.open("wb")
    process = subprocess.Popen(
        command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name, f"http://127.0.0.1:{port}", process, log)


def start_atoll(build: Path, database_url: str, scratch: Path, *extra: str) -> Process:
    port = free_port()
    env = {**os.environ, "ATOLL_DATABASE_URL": database_url, "ATOLL_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "atoll", "serve", str(build), "--port", str(port), *extra]
    return start("atoll serve", command, env, port, scratch / f"atoll-{port}.log")


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def load(
    url: str,
    body: str | bytes,
    seconds: int,
    connections: int = CONNECTIONS,
    headers: dict[str, str] | None = None,
) -> Result:
    """Drive `url` with POSTs of `body` from a separate process; wrk when present."""
    raw = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": "application/json", **(headers or {})}
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write('wrk.method = "POST"\n')
            for key, value in headers.items():
                script.write(f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}\n")
            script.write(f"wrk.body = {_lua_string(raw)}\n")
        threads = "1"
        output = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        os.unlink(script.name)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
        p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
        p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
        errors_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
        socket_errors = re.search(r"Socket errors:.*", output)
        errors = int(errors_match.group(1)) if errors_match else 0
        if socket_errors:
            print(f"    wrk: {socket_errors.group(0)}")
        return Result(rps, p50, p99, errors, "wrk")
    return _python_load(url, raw, headers, seconds, connections)


_PY_LOADER = r"""
import asyncio, json, sys, time
import httpx
url, body, seconds, connections = sys.argv[1], bytes.fromhex(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
headers = json.loads(sys.argv[5])
latencies, errors = [], 0
async def worker(client, stop):
    global errors
    while time.perf_counter() < stop:
        t = time.perf_counter()
        r = await client.post(url, content=body, headers=headers)
        latencies.append(time.perf_counter() - t)
        errors += r.status_code != 200
async def main():
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections), timeout=30) as client:
        start = time.perf_counter(); stop = start + seconds
        await asyncio.gather(*(worker(client, stop) for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(json.dumps({"rps": len(latencies) / elapsed, "p50": pick(0.5), "p99": pick(0.99), "errors": errors}))
asyncio.run(main())
"""


def _python_load(url: str, body: bytes, headers: dict[str, str], seconds: int, connections: int) -> Result:
    print("    (wrk not found: using the Python load generator; `apt-get install -y wrk` for honest figures)")
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            _PY_LOADER,
            url,
            body.hex(),
            str(seconds),
            str(connections),
            json.dumps(headers),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(output.strip().splitlines()[-1])
    return Result(data["rps"], data["p50"], data["p99"], data["errors"], "python-httpx")


def measure(name: str, url: str, body: str, seconds: int = DURATION_S) -> Result:
    load(url, body, WARMUP_S)
    result = load(url, body, seconds)
    print(
        f"  {name:<34} {result.rps:9.0f} req/s   p50 {result.p50_ms:7.2f} ms   p99 {result.p99_ms:7.2f} ms"
        f"   non-2xx {result.errors}   ({result.tool}, {CONNECTIONS} connections, {seconds} s)"
    )
    return result


def gpu_note() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print()
        print("!" * 78)
        print("!! no NVIDIA GPU here: gpu vs cpu throughput not measured; run on a GPU machine !!")
        print("!" * 78)
        print()


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    gpu_note()
    scratch = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    processes: list[Process] = []
    try:
        model, features = train()
        build = write_build(model, features, scratch / "build")
        database_url = migrated_sqlite(scratch)

        import mlflow.sklearn
        import pandas as pd
        from mlflow.models import infer_signature

        frame = pd.DataFrame(features[:100], columns=COLUMNS)
        mlflow_dir = scratch / "mlflow-model"
        mlflow.sklearn.save_model(
            model,
            str(mlflow_dir),
            pip_requirements=["scikit-learn"],
            serialization_format="pickle",
            signature=infer_signature(frame, model.predict(features[:100])),
        )
        mlflow_port = free_port()
        mlflow_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        mlflow_server = start(
            "mlflow models serve",
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                str(mlflow_dir),
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
            ],
            mlflow_env,
            mlflow_port,
            scratch / "mlflow.log",
        )
        processes.append(mlflow_server)
        atoll = start_atoll(build, database_url, scratch)
        processes.append(atoll)
        atoll.wait_until("/v2/health/ready")
        mlflow_server.wait_until("/ping", timeout=120)

        row = features[0].tolist()
        body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [row]}})
        expected = model.predict(features[:1]).tolist()
        for server in (atoll, mlflow_server):  # same payload, same answer
            answer = httpx.post(
                server.url + "/invocations", content=body, headers={"content-type": "application/json"}
            )
            predictions = answer.json()["predictions"]
            assert predictions == expected, (server.name, answer.text)

        print(f"one-row dataframe_split requests to /invocations, {CONNECTIONS} concurrent, loopback:")
        ours = measure("atoll serve (event log on)", atoll.url + "/invocations", body)
        theirs = measure("mlflow models serve", mlflow_server.url + "/invocations", body)
        mlflow_server.stop()

        metrics = httpx.get(atoll.url + "/metrics").text
        logged = float(re.search(r"^atoll_serve_event_log_written_total (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
        dropped = float(re.search(r"^atoll_serve_event_log_dropped_total (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
        batches = float(re.search(r"^atoll_serve_batch_requests_count (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
        merged = float(re.search(r"^atoll_serve_batch_requests_sum (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
        atoll.stop()

        unbatched = start_atoll(build, database_url, scratch, "--max-batch", "1")
        processes.append(unbatched)
        unbatched.wait_until("/v2/health/ready")
        single = measure("atoll serve, batching off", unbatched.url + "/invocations", body, seconds=10)
        unbatched.stop()

        print()
        print(f"  event log: {logged:.0f} inference events written, {dropped:.0f} dropped")
        print(f"  micro-batching: {merged / max(batches, 1):.1f} requests per ONNX Runtime call on average")
        rps_ratio = ours.rps / theirs.rps
        p99_ratio = ours.p99_ms / theirs.p99_ms
        print(
            f"  req/s ratio atoll/mlflow: {rps_ratio:6.2f}x   (goal >= 3x)   {'MET' if rps_ratio >= 3 else 'MISSED'}"
        )
        print(
            f"  p99 ratio   atoll/mlflow: {p99_ratio:6.2f}x   (goal <= 0.5x) {'MET' if p99_ratio <= 0.5 else 'MISSED'}"
        )
        print(
            f"  batching on/off req/s:    {ours.rps / single.rps:6.2f}x   p99 {ours.p99_ms / single.p99_ms:.2f}x"
        )
    finally:
        for process in processes:
            process.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
