"""An endpoint switch under 200 requests a second: no failed request; the router next to direct.

Two local deployments of the same cpu build (blue active, green warm), `atoll router` as a
process, and an open-loop load of one-row OIP requests at `--rate` a second for
`--seconds` (requests are sent on schedule, never waiting for answers, on loopback):

- router: through `/endpoints/bench/...`, switching blue → green halfway (the service's
  `endpoints.switch`, as `atoll endpoints switch` does); counts failures, and who answered;
- anchor: the same load straight to blue's model server, no router, no switch.

Prints each row's p50/p99 and the ratio. Goal: 0 failed requests through the switch.
Run: `uv run python bench/bench_switch.py [--rate 200] [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atoll.db import make_engine, make_session_factory, unit_of_work  # noqa: E402
from atoll.deployer import endpoints, lifecycle, rollouts, service  # noqa: E402
from atoll.deployer.lifecycle import DeployerContext  # noqa: E402
from atoll.deployer.routing.process import RouterProcess  # noqa: E402
from atoll.deployer.schemas import DeployRequest  # noqa: E402
from atoll.deployer.targets.supervisor import LocalSupervisor  # noqa: E402
from atoll.jobs import Job  # noqa: E402
from atoll.registry.models import Build  # noqa: E402
from atoll.settings import Settings, load_settings  # noqa: E402
from bench.bench_serve import COLUMNS, free_port, migrated_sqlite, train, write_build  # noqa: E402

WRK_CONNECTIONS = 20
BODY = {
    "inputs": [{"name": "X", "shape": [1, len(COLUMNS)], "datatype": "FP32", "data": [0.1] * len(COLUMNS)}]
}


async def open_loop(
    url: str, rate: float, seconds: float, halfway: Any = None
) -> list[tuple[float, int, str]]:
    """Fire requests on a fixed schedule; (latency s, status or 0, X-Atoll-Deployment) each."""
    results: list[tuple[float, int, str]] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def one() -> None:
            started = time.perf_counter()
            try:
                response = await client.post(url, json=BODY)
                results.append(
                    (
                        time.perf_counter() - started,
                        response.status_code,
                        response.headers.get("x-atoll-deployment", ""),
                    )
                )
            except httpx.HTTPError as exc:
                results.append((time.perf_counter() - started, 0, type(exc).__name__))

        total = int(rate * seconds)
        began = time.perf_counter()
        tasks = []
        for index in range(total):
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if index == total // 2 and halfway is not None:
                threading.Thread(target=halfway, daemon=True).start()
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return results


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %s
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) served = {}; bad = 0 end
function delay() return %d end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
  local who = headers["x-atoll-deployment"] or headers["X-Atoll-Deployment"] or "-"
  served[who] = (served[who] or 0) + 1
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local line = "served"
    for who, n in pairs(t:get("served")) do line = line .. " " .. who .. "=" .. n end
    print(line .. " non200=" .. t:get("bad"))
  end
  print(string.format("p50_us=%%d p99_us=%%d", latency:percentile(50), latency:percentile(99)))
end
%s
"""


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


def wrk(url: str, rate: float, seconds: float, halfway: Any = None, extra_lua: str = "") -> dict[str, Any]:
    """A paced closed loop in a wrk process: each connection pauses so the total is about `rate`/s.

    `extra_lua` is added to the script (e.g. a `request` function that varies a header)."""
    pause_ms = int(WRK_CONNECTIONS / rate * 1000)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (json.dumps(json.dumps(BODY)), pause_ms, extra_lua))
    timer = threading.Timer(seconds / 2, halfway) if halfway is not None else None
    if timer is not None:
        timer.start()
    command = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds:.0f}s", "-s", script.name, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    if timer is not None:
        timer.join()
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    socket = re.search(r"Socket errors: (.*)", output)
    served = _pairs(re.search(r"^served(.*)$", output, re.M).group(1))  # type: ignore[union-attr]
    non200 = int(served.pop("non200"))
    latency = _pairs(re.search(r"p50_us=\d+ p99_us=\d+", output).group(0))  # type: ignore[union-attr]
    return {
        "requests": requests,
        "rate": requests / seconds,
        "failed": non200 + (sum(int(n) for n in re.findall(r"\d+", socket.group(1))) if socket else 0),
        "socket_errors": socket.group(1) if socket else "none",
        "p50": int(latency["p50_us"]) / 1000,
        "p99": int(latency["p99_us"]) / 1000,
        "served": {k: int(v) for k, v in served.items()},
    }


def summary(results: list[tuple[float, int, str]]) -> dict[str, Any]:
    """The Python open loop's results in the shape `wrk` returns."""
    latencies = sorted(r[0] for r in results if r[1] == 200)
    return {
        "requests": len(results),
        "rate": float("nan"),
        "failed": sum(1 for r in results if r[1] != 200),
        "socket_errors": dict(Counter(r[2] for r in results if r[1] == 0)),
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "served": dict(Counter(r[2] for r in results if r[1] == 200)),
    }


def deploy(context: DeployerContext, factory: Any, name: str, *, switch: bool) -> str:
    with unit_of_work(factory) as session:
        request = DeployRequest(
            model="bench", version=1, backend="cpu", name=name, endpoint="bench", switch=switch
        )
        deployment = service.deploy(session, context, actor=None, request=request)
        job = session.get(Job, deployment.rollout_job_id)
        assert job is not None
        payload, job.status = dict(job.payload), "succeeded"
    with unit_of_work(factory) as session:
        outcome = rollouts.run_rollout(session, context, payload, poll_seconds=0.1)
        assert outcome["state"] == "available", outcome
    with unit_of_work(factory) as session:
        return str(lifecycle.get(session, name).address)


@dataclass
class LocalBench:
    """Two local deployments of one small model behind the endpoint "bench", and `atoll router`."""

    settings: Settings
    factory: sessionmaker[Session]
    active: str  # the address of the deployment serving all traffic
    router_url: str


@contextmanager
def local_bench(prefix: str, *, active: str, warm: str) -> Iterator[LocalBench]:
    """The local target's supervisor, two deployments (`active` serving, `warm` at 0) and the
    router on a fresh SQLite database; everything stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        root = Path(scratch)
        model, features = train()
        build = write_build(model, features, root / "build")
        url = migrated_sqlite(root)
        settings = load_settings(
            data_dir=root / "data", database_url=url, log_level="WARNING", router_port=free_port()
        )
        factory = make_session_factory(make_engine(url))
        with unit_of_work(factory) as session:
            session.add(
                Build(
                    model_name="bench",
                    version=1,
                    backend="cpu",
                    status="succeeded",
                    format="onnx",
                    artifact_uri=str(build),
                )
            )
        supervisor = LocalSupervisor.from_settings(settings)
        supervisor.start()
        router = RouterProcess(settings, host="127.0.0.1", port=settings.router_port)
        try:
            context = DeployerContext.from_settings(settings)
            address = deploy(context, factory, active, switch=True)
            deploy(context, factory, warm, switch=False)
            yield LocalBench(settings, factory, address, router.start())
        finally:
            router.stop()
            supervisor.stop(stop_servers=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with local_bench("atoll-bench-switch-", active="bench-blue", warm="bench-green") as bench:
        factory, router_url = bench.factory, bench.router_url
        blue = bench.active
        endpoint_url = f"{router_url}/endpoints/bench/v2/models/bench/infer"
        for warm in (endpoint_url, f"{blue}/v2/models/bench/infer"):  # both paths' connections
            wrk(warm, args.rate, 2) if shutil.which("wrk") else asyncio.run(open_loop(warm, args.rate, 2))

        def switch() -> None:
            with unit_of_work(factory) as session:
                endpoints.switch(session, actor=None, name="bench", to="bench-green", reason="bench")

        if shutil.which("wrk"):
            tool = f"wrk, {WRK_CONNECTIONS} paced connections"
            routed = wrk(endpoint_url, args.rate, args.seconds, halfway=switch)
            direct = wrk(f"{blue}/v2/models/bench/infer", args.rate, args.seconds)
        else:
            tool = "Python open loop (no wrk: `apt-get install -y wrk` for honest figures)"
            routed = summary(asyncio.run(open_loop(endpoint_url, args.rate, args.seconds, switch)))
            direct = summary(asyncio.run(open_loop(f"{blue}/v2/models/bench/infer", args.rate, args.seconds)))
    print(
        f"endpoint switch at {args.rate:.0f} req/s for {args.seconds:.0f} s, one-row OIP requests ({tool}):"
    )
    for name, row in (("router", routed), ("direct", direct)):
        print(
            f"  {name:7} {row['requests']:5d} requests ({row['rate']:.0f}/s), {row['failed']} failed, "
            f"p50 {row['p50']:6.2f} ms, p99 {row['p99']:7.2f} ms"
        )
    print(f"  router: served by {routed['served']}; socket errors: {routed['socket_errors']}")
    print(
        f"  ratio router/direct: p50 {routed['p50'] / direct['p50']:.2f}x, p99 {routed['p99'] / direct['p99']:.2f}x"
    )
    verdict = "meets" if routed["failed"] == 0 else "MISSES"
    print(f"  goal: 0 failed requests through the switch: {verdict} ({routed['failed']} failed)")


if __name__ == "__main__":
    main()
