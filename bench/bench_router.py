"""What the router adds: p50/p99 of one-row requests through `atoll router` vs straight to the
model server, at 500 and 1,000 requests a second on loopback.

Two local deployments of the same cpu build behind the endpoint `bench` (the harness of
bench/bench_switch.py: a real `atoll serve` per deployment, `atoll router` as a process).
For each rate, three rows of the same load (wrk, paced connections; the Python open loop
where wrk is missing):

- direct (the anchor): straight to blue's model server;
- router: through `/endpoints/bench/...`, blue at 100 %, no unit key;
- router split+unit: blue/green 50/50, a random `X-Atoll-Unit` per request out of 100k
  (sticky assignment, and an exposure record for each unit's first request).

Prints p50/p99 per row, the p99 the router adds over direct and the ratio. Goal: at most
1 ms added p99. Run: `uv run python bench/bench_router.py [--rates 500,1000] [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atoll.db import unit_of_work  # noqa: E402
from atoll.deployer import endpoints  # noqa: E402
from bench.bench_switch import WRK_CONNECTIONS, local_bench, open_loop, summary, wrk  # noqa: E402

GOAL_ADDED_P99_MS = 1.0
RANDOM_UNIT = """
request = function()
  wrk.headers["X-Atoll-Unit"] = "customer-" .. math.random(1, 100000)
  return wrk.format(nil, nil, nil, nil)
end
"""


def measure(url: str, rate: float, seconds: float, *, units: bool) -> dict[str, Any]:
    if shutil.which("wrk"):
        return wrk(url, rate, seconds, extra_lua=RANDOM_UNIT if units else "")
    return summary(asyncio.run(open_loop(url, rate, seconds)))  # no unit header in this fallback


def set_split(factory: Any, weights: dict[str, int]) -> None:
    with unit_of_work(factory) as session:
        endpoints.set_weights(session, actor=None, name="bench", to=weights, reason="bench")


def exposure_counts(router_url: str) -> str:
    lines = httpx.get(f"{router_url}/metrics").text.splitlines()
    found = [line for line in lines if line.startswith("atoll_router_exposures_") and "_created" not in line]
    return ", ".join(line.replace("atoll_router_exposures_", "") for line in found)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="500,1000")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    rows: list[tuple[float, str, dict[str, Any]]] = []
    with local_bench("atoll-bench-router-", active="bench-blue", warm="bench-green") as bench:
        settings, factory, router_url = bench.settings, bench.factory, bench.router_url
        blue = bench.active
        routed = f"{router_url}/endpoints/bench/v2/models/bench/infer"
        direct = f"{blue}/v2/models/bench/infer"
        for warm in (routed, direct):
            measure(warm, rates[0], 2, units=False)
        for rate in rates:
            set_split(factory, {"bench-blue": 100})
            rows.append((rate, "direct", measure(direct, rate, args.seconds, units=False)))
            rows.append((rate, "router", measure(routed, rate, args.seconds, units=False)))
            set_split(factory, {"bench-blue": 50, "bench-green": 50})
            asyncio.run(asyncio.sleep(2 * settings.router_refresh_seconds))
            rows.append((rate, "router split+unit", measure(routed, rate, args.seconds, units=True)))
        exposures = exposure_counts(router_url)
    tool = f"wrk, {WRK_CONNECTIONS} paced connections" if shutil.which("wrk") else "Python open loop"
    print(f"router vs direct, one-row OIP requests on loopback ({tool}, {args.seconds:.0f} s per row):")
    worst_added = 0.0
    for rate in rates:
        anchor = next(row for r, name, row in rows if r == rate and name == "direct")
        for r, name, row in rows:
            if r != rate:
                continue
            added = row["p99"] - anchor["p99"]
            if name != "direct":
                worst_added = max(worst_added, added)
            print(
                f"  {rate:5.0f}/s {name:18} {row['requests']:6d} req ({row['rate']:5.0f}/s) {row['failed']} failed  "
                f"p50 {row['p50']:6.2f} ms  p99 {row['p99']:6.2f} ms  "
                f"added p99 {added:+6.2f} ms  ratio p50 {row['p50'] / anchor['p50']:.2f}x "
                f"p99 {row['p99'] / anchor['p99']:.2f}x  served {row['served']}"
            )
    print(f"  exposures: {exposures}")
    verdict = "meets" if worst_added <= GOAL_ADDED_P99_MS else "MISSES"
    print(f"  goal: <= {GOAL_ADDED_P99_MS:.0f} ms added p99: {verdict} (worst {worst_added:.2f} ms)")


if __name__ == "__main__":
    main()
