"""Shadow traffic's cost to callers: router p50/p99 with a shadow on (every request mirrored) vs off.

Two local deployments of the same cpu build (primary serving, candidate warm at 0 %),
`atoll router` as a process, and a paced load of one-row OIP requests at `--rate` a second
for `--seconds`, three runs: shadow off, shadow on at `share=1.0` (the worst case: every
request is mirrored and compared; `--share` for another), and shadow off again (the machine's drift). Mirrors run
after the caller's answer on the router's event loop, so what they cost the caller is the
event loop's time; that is what this measures. Prints each run's p50/p99 and the ratio
on/off. Goal: p99 added by the shadow ≤ 1 ms at 200 req/s (one router process, loopback).
Run: `uv run python bench/bench_shadow.py [--rate 200] [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from atoll.db import unit_of_work  # noqa: E402
from atoll.deployer import shadow  # noqa: E402
from atoll.deployer.models import ShadowComparison  # noqa: E402
from atoll.deployer.traffic_schemas import ShadowStart  # noqa: E402
from bench.bench_switch import WRK_CONNECTIONS, local_bench, open_loop, summary, wrk  # noqa: E402


def measure(url: str, rate: float, seconds: float) -> dict[str, Any]:
    if shutil.which("wrk"):
        return wrk(url, rate, seconds)
    return summary(asyncio.run(open_loop(url, rate, seconds)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--share", type=float, default=1.0, help="Share mirrored (1.0: every request)")
    args = parser.parse_args()
    tool = f"wrk, {WRK_CONNECTIONS} paced connections" if shutil.which("wrk") else "Python open loop (no wrk)"
    with local_bench("atoll-bench-shadow-", active="bench-primary", warm="bench-shadow") as bench:
        settings, factory, router_url = bench.settings, bench.factory, bench.router_url
        endpoint_url = f"{router_url}/endpoints/bench/v2/models/bench/infer"
        measure(endpoint_url, args.rate, 2)  # warm the connections
        off = measure(endpoint_url, args.rate, args.seconds)
        with unit_of_work(factory) as session:
            shadow.start(
                session, actor=None, name="bench", body=ShadowStart(to="bench-shadow", share=args.share)
            )
        time.sleep(2 * settings.router_refresh_seconds + 0.5)
        measure(endpoint_url, args.rate, 2)  # warm the mirror's connections
        on = measure(endpoint_url, args.rate, args.seconds)
        with unit_of_work(factory) as session:
            shadow.stop(session, actor=None, name="bench")
        time.sleep(2 * settings.router_refresh_seconds + 1.0)
        with unit_of_work(factory) as session:
            compared = session.scalar(select(func.count()).select_from(ShadowComparison)) or 0
        off_again = measure(endpoint_url, args.rate, args.seconds)
    print(f"shadow at {args.rate:.0f} req/s for {args.seconds:.0f} s, one-row OIP requests ({tool}):")
    for name, row in (("off", off), ("on", on), ("off again", off_again)):
        print(
            f"  shadow {name:9} {row['requests']:5d} requests, {row['failed']} failed, "
            f"p50 {row['p50']:6.2f} ms, p99 {row['p99']:7.2f} ms"
        )
    print(f"  comparisons written: {compared} (share {args.share:g})")
    baseline_p50 = min(off["p50"], off_again["p50"])
    baseline_p99 = min(off["p99"], off_again["p99"])
    print(f"  ratio on/off: p50 {on['p50'] / baseline_p50:.2f}x, p99 {on['p99'] / baseline_p99:.2f}x")
    added = on["p99"] - baseline_p99
    verdict = "meets" if added <= 1.0 and on["failed"] == 0 else "MISSES"
    print(f"  goal: shadow adds <= 1 ms p99 and fails nothing: {verdict} (+{added:.2f} ms p99)")


if __name__ == "__main__":
    main()
