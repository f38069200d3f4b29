"""The one place that runs Evidently: its own ``DataDriftPreset`` report, parsed into a ``DriftResult``.

The platform's verdicts come from the fast engine (:mod:`atoll.monitoring.drift`); this
adapter produces Evidently's self-contained HTML report for people to read, and the
reference answers the engine is tested against. Evidently is imported on first use (it
takes 4-9 s to import).

What is passed: the spec's columns only, with an explicit ``DataDefinition`` (the spec's
kinds, so Evidently infers nothing), ``per_column_method`` for every column that names a
method (``auto`` columns are left to Evidently's own choice), ``per_column_threshold`` for
every column that names a threshold, and the spec's ``drift_share``.

What is read back from ``snapshot.dict()``: per ``ValueDrift`` metric the column, the
method (its name when given, its display name when Evidently chose it), the threshold and
the score; its verdict is the status of its "drift" test (``FAIL`` = drift), since the
dict has no per-column boolean. Evidently raises on a column with no non-null value, so
such columns are reported as ``all_null`` and left out of its run.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from atoll.monitoring.drift import constant_detail, untested
from atoll.monitoring.errors import DriftInputError, EvidentlyError, check_same_columns
from atoll.monitoring.methods import METHODS, MethodName
from atoll.monitoring.schemas import ColumnDrift, ColumnSpec, DriftResult, DriftSpec
from atoll.monitoring.values import distinct_present, present_count
from atoll.monitoring.verdicts import summarize

_BY_EVIDENTLY_NAME: dict[str, MethodName] = {
    **{info.display_name: name for name, info in METHODS.items()},
    **{name: name for name in METHODS},
}


@dataclass(frozen=True)
class EvidentlyReport:
    result: DriftResult
    #: Evidently's own dataset verdict (its ``DriftedColumnsCount`` test), beside ours.
    dataset_drift: bool | None
    drifted_share: float | None
    html_path: Path | None


def run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: DriftSpec,
    *,
    html_path: Path | None = None,
    sample_rows: int | None = None,
    seed: int = 0,
) -> EvidentlyReport:
    """Run Evidently's ``DataDriftPreset`` on the spec's columns; save its HTML report to ``html_path``.

    ``sample_rows``: test a uniform random sample (``seed``) of at most this many window
    rows; the reference is never sampled (its size picks Evidently's methods).
    """
    check_same_columns((str(c) for c in reference.columns), (str(c) for c in current.columns), spec.names)
    if len(reference) == 0:
        raise DriftInputError("the reference set has no rows")
    if sample_rows is not None and len(current) > sample_rows:
        current = current.sample(n=sample_rows, random_state=seed)
    if len(current) == 0:
        return EvidentlyReport(
            summarize([], spec, reference_rows=len(reference), current_rows=0), None, None, None
        )

    counts = {column.name: _counts(reference[column.name], current[column.name]) for column in spec.columns}
    testable = [
        c for c in spec.columns if counts[c.name]["reference_values"] and counts[c.name]["current_values"]
    ]
    parsed: dict[str, dict[str, Any]] = {}
    dataset_drift = drifted_share = None
    if testable:
        snapshot = _run_report(reference, current, spec, testable, html_path)
        parsed, dataset_drift, drifted_share = parse_snapshot(snapshot)
    columns = [
        _column_result(column, counts[column.name], parsed.get(column.name), reference, current)
        if column in testable
        else untested(column, counts[column.name])
        for column in spec.columns
    ]
    result = summarize(columns, spec, reference_rows=len(reference), current_rows=len(current))
    return EvidentlyReport(result, dataset_drift, drifted_share, html_path if testable else None)


def _counts(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    ref_values, cur_values = present_count(reference), present_count(current)
    return {
        "column": str(reference.name),
        "reference_values": ref_values,
        "current_values": cur_values,
        "reference_nulls": len(reference) - ref_values,
        "current_nulls": len(current) - cur_values,
    }


def _run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    spec: DriftSpec,
    columns: list[ColumnSpec],
    html_path: Path | None,
) -> dict[str, Any]:
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry: off unless asked for
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = [c.name for c in columns]
    definition = DataDefinition(
        numerical_columns=[c.name for c in columns if c.kind == "numeric"],
        categorical_columns=[c.name for c in columns if c.kind == "categorical"],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    preset = DataDriftPreset(
        columns=names,
        drift_share=spec.drift_share,
        per_column_method={c.name: c.method for c in columns if c.method != "auto"} or None,
        per_column_threshold={c.name: c.threshold for c in columns if c.threshold is not None} or None,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # its own divide-by-zero notes
            snapshot = Report([preset], include_tests=True).run(
                Dataset.from_pandas(current[names], data_definition=definition),
                Dataset.from_pandas(reference[names], data_definition=definition),
            )
            if html_path is not None:
                html_path.parent.mkdir(parents=True, exist_ok=True)
                snapshot.save_html(str(html_path))
        data: dict[str, Any] = snapshot.dict()
    except Exception as exc:
        raise EvidentlyError(f"Evidently failed: {type(exc).__name__}: {exc}") from exc
    return data


def parse_snapshot(snapshot: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], bool | None, float | None]:
    """Per column {method, threshold, score, drifted}; Evidently's dataset verdict and share."""
    status_by_metric = {test["metric_config"]["metric_id"]: test["status"] for test in snapshot["tests"]}
    columns: dict[str, dict[str, Any]] = {}
    dataset_drift = share = None
    for metric in snapshot["metrics"]:
        config, status = metric["config"], status_by_metric.get(metric["id"])
        if config["type"].endswith(":ValueDrift"):
            method = _BY_EVIDENTLY_NAME.get(config["method"])
            if method is None:
                raise EvidentlyError(f"Evidently used a method Atoll does not know: {config['method']!r}")
            score, threshold = float(metric["value"]), float(config["threshold"])
            drifted = status == "FAIL" if status else METHODS[method].is_drift(score, threshold)
            columns[config["column"]] = {
                "method": method,
                "threshold": threshold,
                "score": score,
                "drifted": drifted,
            }
        elif config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            dataset_drift = status == "FAIL" if status else None
    return columns, dataset_drift, share


def _column_result(
    column: ColumnSpec,
    counts: dict[str, Any],
    parsed: dict[str, Any] | None,
    reference: pd.DataFrame,
    current: pd.DataFrame,
) -> ColumnDrift:
    if parsed is None:
        raise EvidentlyError(f"Evidently's report has no drift result for column {column.name!r}")
    constant = [
        side
        for side, frame in (("reference", reference), ("window", current))
        if distinct_present(frame[column.name]) == 1
    ]
    return ColumnDrift(
        **counts,
        kind=column.kind,
        status="constant" if constant else "tested",
        method=parsed["method"],
        score_type=METHODS[parsed["method"]].score_type,
        threshold=parsed["threshold"],
        score=parsed["score"],
        drifted=parsed["drifted"],
        detail=constant_detail(constant),
    )
