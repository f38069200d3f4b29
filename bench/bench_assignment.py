"""Sticky assignment: units assigned per second in-process, scalar and vectorised, next to an anchor.

- anchor: a bare `hashlib.sha256` loop over the same units (one C hash per unit, nothing
  else): what "hash every unit in Python" costs at the least;
- scalar: `assignment.assign` per unit, as the router calls it once per request;
- vectorised: `assignment.assign_many` over all units at once (numpy), and its two stages
  (`unit_keys`: strings → 64-bit keys; `pick_many`: keys → deployment).

Each row: units a second (best of `--repeat`), and its ratio to the anchor. Goal: at least
1 million units a second.
Run: `uv run python bench/bench_assignment.py [--units 1000000] [--deployments 3] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atoll.deployer.assignment import assign, assign_many, pick_many, unit_keys  # noqa: E402

GOAL_PER_SECOND = 1_000_000
SALT = "bench-split"


def best_rate(count: int, repeat: int, work: Callable[[], object]) -> float:
    """Units a second, the best of `repeat` runs (the least disturbed on a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--scalar-units", type=int, default=200_000, help="the scalar loop is slower")
    parser.add_argument("--deployments", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    units = [f"customer-{i}" for i in range(args.units)]
    scalar_units = units[: args.scalar_units]
    share = 100 // args.deployments
    weights = {f"deployment-{i}": share for i in range(args.deployments)}
    weights["deployment-0"] += 100 - sum(weights.values())
    candidates = list(weights.items())

    def anchor() -> None:
        sha256 = hashlib.sha256
        for unit in units:
            sha256(unit.encode()).digest()

    def scalar() -> None:
        for unit in scalar_units:
            assign(SALT, unit, weights)

    keys = unit_keys(SALT, units)
    rows = [
        ("anchor: hashlib.sha256 loop", best_rate(len(units), args.repeat, anchor)),
        ("scalar: assign() per unit", best_rate(len(scalar_units), args.repeat, scalar)),
        (
            "vectorised: assign_many()",
            best_rate(len(units), args.repeat, lambda: assign_many(SALT, units, weights)),
        ),
        ("  stage unit_keys()", best_rate(len(units), args.repeat, lambda: unit_keys(SALT, units))),
        ("  stage pick_many()", best_rate(len(units), args.repeat, lambda: pick_many(keys, candidates))),
    ]
    anchor_rate = rows[0][1]
    print(
        f"sticky assignment, {len(units):,} units ({len(scalar_units):,} for the scalar loop), {args.deployments} deployments:"
    )
    for name, rate in rows:
        print(f"  {name:30} {rate / 1e6:7.2f} M units/s   ratio to anchor {rate / anchor_rate:5.2f}x")
    vectorised = rows[2][1]
    verdict = "meets" if vectorised >= GOAL_PER_SECOND else "MISSES"
    print(
        f"  goal: >= {GOAL_PER_SECOND / 1e6:.0f} M units/s (vectorised): {verdict} ({vectorised / 1e6:.2f} M/s)"
    )
    print(f"  the router's cost per request (scalar): {1e6 / rows[1][1]:.1f} us")


if __name__ == "__main__":
    main()
