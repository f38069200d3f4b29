"""Benchmark: the platform's drift run against Evidently's ``DataDriftPreset`` on the same data.

Data: a 50,000-row reference and a 1,000,000-row window of 25 columns (15 numeric, some
with nulls, one integer; 10 categorical strings with 2 to 40 levels), 7 of them drifted
(``*_drift``) and one nudged just under the Wasserstein threshold (``num_near``). Written
once to Parquet; the 100,000-row case is the first 100,000 rows of the same window.

Each side runs in its own subprocess (``--side``), which reads the Parquet files, then
times only the drift work and reports its peak RSS (``ru_maxrss``: imports and data
included, so the floor is the same for both) beside its RSS before the work:

- anchor: ``Report([DataDriftPreset()]).run(current, reference)`` with an explicit
  ``DataDefinition`` (Evidently's defaults: Wasserstein / Jensen-Shannon at this size);
- atoll: ``build_profile(reference)`` once (a monitor stores it), then
  ``detect_drift(profile, window)``, with 1 and 2 worker threads.

Printed: both sides' seconds and peak memory, the ratios (with and without the one-off
profile), per-column verdict agreement, and how the verdicts of Evidently's run on the
100,000-row sample compare with the full window's (what sampling a window would change).

Run: ``uv run python bench/bench_drift.py``. Goals: >= 10x faster than the anchor with
identical per-column verdicts and <= 4 GB peak. About 3 minutes on 2 cores (Evidently's
1M-row run is most of it).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from atoll.monitoring.methods import ColumnKind

REFERENCE_ROWS, WINDOW_ROWS, SMALL_WINDOW_ROWS = 50_000, 1_000_000, 100_000
GOAL_SPEEDUP, GOAL_PEAK_GB = 10.0, 4.0


def numeric_columns(rng: np.random.Generator, n: int, window: bool) -> dict[str, np.ndarray]:
    d = 1.0 if window else 0.0
    cols: dict[str, np.ndarray] = {}
    for i in range(8):
        cols[f"num_{i}"] = rng.normal(10 * i, 1 + i, n)
    cols["num_nulls"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 1, n))
    cols["num_int"] = rng.integers(0, 1000, n)
    cols["num_near"] = rng.normal(0.08 * d, 1, n)  # W/std ~ 0.08 < 0.1: not drift, close to it
    cols["num_shift_drift"] = rng.normal(0.3 * d, 1, n)
    cols["num_scale_drift"] = rng.normal(0, 1 + 0.6 * d, n)
    cols["num_skew_drift"] = rng.lognormal(0, 0.5 + 0.4 * d, n)
    cols["num_nulls_drift"] = np.where(rng.random(n) < 0.05 + 0.2 * d, np.nan, rng.normal(0.5 * d, 1, n))
    return cols


def categorical_columns(rng: np.random.Generator, n: int, window: bool) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for i, levels in enumerate((3, 5, 8, 12, 20, 40)):
        names = np.array([f"level_{k}" for k in range(levels)], dtype=object)
        cols[f"cat_{i}"] = rng.choice(names, n, p=np.full(levels, 1 / levels))
    abc = np.array(["a", "b", "c", "d"], dtype=object)
    cols["cat_mix_drift"] = rng.choice(abc, n, p=[0.2, 0.3, 0.2, 0.3] if window else [0.4, 0.3, 0.2, 0.1])
    new = np.array(["x", "y", "z", "new"], dtype=object)
    cols["cat_new_drift"] = rng.choice(new, n, p=[0.3, 0.25, 0.25, 0.2] if window else [0.4, 0.3, 0.3, 0.0])
    flag = rng.choice(np.array(["no", "yes"], dtype=object), n, p=[0.5, 0.5] if window else [0.8, 0.2])
    cols["cat_flag_drift"] = flag
    nulls = rng.choice(np.array(["p", "q", "r"], dtype=object), n)
    nulls[rng.random(n) < 0.1] = None
    cols["cat_nulls"] = nulls
    return cols


def make_data(directory: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, rows, window in (("reference", REFERENCE_ROWS, False), ("window", WINDOW_ROWS, True)):
        frame = pd.DataFrame({**numeric_columns(rng, rows, window), **categorical_columns(rng, rows, window)})
        frame.to_parquet(directory / f"{name}.parquet", index=False)


def kinds(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    return {str(c): "categorical" if str(c).startswith("cat_") else "numeric" for c in frame.columns}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def side_evidently(reference: pd.DataFrame, window: pd.DataFrame) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from atoll.monitoring.evidently_adapter import parse_snapshot

    column_kinds = kinds(reference)
    definition = DataDefinition(
        numerical_columns=[c for c, k in column_kinds.items() if k == "numeric"],
        categorical_columns=[c for c, k in column_kinds.items() if k == "categorical"],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    before = rss_mb()
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(window, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - start
    columns, dataset_drift, _ = parse_snapshot(snapshot.dict())
    verdicts = {c: [v["method"], v["score"], v["drifted"]] for c, v in columns.items()}
    return {"seconds": seconds, "rss_before_mb": before, "verdicts": verdicts, "dataset_drift": dataset_drift}


def side_atoll(reference: pd.DataFrame, window: pd.DataFrame, workers: int) -> dict[str, Any]:
    from atoll.monitoring.drift import detect_drift
    from atoll.monitoring.reference import build_profile
    from atoll.monitoring.schemas import ColumnSpec, DriftSpec

    spec = DriftSpec(columns=tuple(ColumnSpec(name=c, kind=k) for c, k in kinds(reference).items()))
    before = rss_mb()
    start = time.perf_counter()
    profile = build_profile(reference, spec)
    profile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = detect_drift(profile, window, spec, workers=workers)
    seconds = time.perf_counter() - start
    verdicts = {c.column: [c.method, c.score, c.drifted] for c in result.columns}
    assert result.evidently is not None
    return {
        "seconds": seconds,
        "profile_seconds": profile_seconds,
        "rss_before_mb": before,
        "verdicts": verdicts,
        "dataset_drift": result.evidently.drifted,
    }


def run_side(directory: Path, rows: int) -> None:
    """Child process: read the data, run one side, print one JSON line."""
    side, workers = sys.argv[sys.argv.index("--side") + 1], int(sys.argv[sys.argv.index("--workers") + 1])
    reference = pd.read_parquet(directory / "reference.parquet")
    window = pq.read_table(directory / "window.parquet").slice(0, rows).to_pandas()
    out = side_evidently(reference, window) if side == "evidently" else side_atoll(reference, window, workers)
    out["peak_mb"] = peak_mb()
    print(json.dumps(out))


def spawn(directory: Path, side: str, rows: int, workers: int = 1) -> dict[str, Any]:
    command = [sys.executable, __file__, "--data", str(directory), "--rows", str(rows), "--side", side]
    done = subprocess.run([*command, "--workers", str(workers)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} side failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> tuple[int, list[str], float]:
    same, differ, worst = 0, [], 0.0
    for column, (method, score, drifted) in theirs["verdicts"].items():
        o_method, o_score, o_drifted = ours["verdicts"][column]
        if (o_method, o_drifted) == (method, drifted):
            same += 1
        else:
            differ.append(f"{column}: atoll {o_method} {o_drifted} / evidently {method} {drifted}")
        worst = max(worst, abs(o_score - score) / max(abs(score), 1e-300))
    return same, differ, worst


def report(rows: int, evidently: dict[str, Any], atoll: dict[int, dict[str, Any]]) -> bool:
    print(f"\n== window {rows:,} rows x 25 columns, reference {REFERENCE_ROWS:,} rows")
    print(f"{'':34}{'seconds':>10}{'peak MB':>10}{'RSS before':>12}")
    print(
        f"{'evidently DataDriftPreset.run':34}{evidently['seconds']:>10.2f}{evidently['peak_mb']:>10.0f}"
        f"{evidently['rss_before_mb']:>12.0f}"
    )
    ok = True
    for workers, side in atoll.items():
        total = side["profile_seconds"] + side["seconds"]
        print(
            f"{f'atoll detect_drift ({workers} thread)':34}{side['seconds']:>10.2f}{side['peak_mb']:>10.0f}"
            f"{side['rss_before_mb']:>12.0f}"
        )
        print(f"{'  + build_profile (once)':34}{side['profile_seconds']:>10.2f}")
        print(
            f"  ratio evidently / atoll: {evidently['seconds'] / side['seconds']:.1f}x run, "
            f"{evidently['seconds'] / total:.1f}x run + profile"
        )
        same, differ, worst = agreement(side, evidently)
        print(
            f"  per-column verdicts identical: {same}/{len(evidently['verdicts'])}; "
            f"dataset drift atoll {side['dataset_drift']} / evidently {evidently['dataset_drift']}; "
            f"max relative score difference {worst:.1e}"
        )
        for line in differ:
            print(f"    differs: {line}")
        ok &= (
            not differ
            and evidently["seconds"] / side["seconds"] >= GOAL_SPEEDUP
            and side["peak_mb"] <= GOAL_PEAK_GB * 1024
        )
    drifted = sorted(c for c, v in evidently["verdicts"].items() if v[2])
    print(f"  drifted columns (evidently): {drifted}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--side")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.side:
        run_side(args.data, args.rows)
        return
    with tempfile.TemporaryDirectory(prefix="atoll-bench-drift-") as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        make_data(directory)
        print(f"data generated in {time.perf_counter() - start:.1f} s ({directory})")
        results: dict[int, tuple[dict[str, Any], dict[int, dict[str, Any]]]] = {}
        ok = True
        for rows in (SMALL_WINDOW_ROWS, WINDOW_ROWS):
            atoll = {workers: spawn(directory, "atoll", rows, workers) for workers in (1, 2)}
            evidently = spawn(directory, "evidently", rows)
            results[rows] = (evidently, atoll)
            ok &= report(rows, evidently, atoll)
        sample, full = results[SMALL_WINDOW_ROWS][0], results[WINDOW_ROWS][1][1]
        same, differ, _ = agreement(full, sample)
        print(
            f"\nsampling: Evidently on the first {SMALL_WINDOW_ROWS:,} rows vs atoll on all {WINDOW_ROWS:,}: "
            f"{same}/{len(sample['verdicts'])} verdicts identical"
        )
        for line in differ:
            print(f"    differs: {line}")
        print(
            f"\ngoals (>= {GOAL_SPEEDUP:.0f}x, identical verdicts, <= {GOAL_PEAK_GB:.0f} GB): "
            f"{'met' if ok else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
