"""The steps of one build: convert, check parity against the original, profile latency.

Split from `job.py` (which moves the build row): these functions turn a downloaded MLflow
model into a build directory and numbers, with no database access.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from atoll.backends import CPU_PROVIDER, Backend, Precision
from atoll.errors import InvalidInput
from atoll.registry.builds import parity
from atoll.registry.builds.convert import (
    ConversionUnsupported,
    OnnxModel,
    as_estimator,
    at_precision,
    is_classifier,
    to_onnx,
)
from atoll.registry.builds.manifest import ONNX_FILE, PYFUNC_DIR, BuildManifest
from atoll.registry.mlflow.model_files import (
    TREE_FLAVORS,
    LocalModel,
    load_pyfunc,
    load_sklearn,
    load_trees,
)

LATENCY_RUNS = {1: 50, 64: 20}
WARMUP_RUNS = 3


# --- the job --------------------------------------------------------------------------------


@dataclass
class Outcome:
    format: str
    precision: Precision
    provider: str
    emulated: bool
    notes: list[str]
    parity: dict[str, Any] | None
    latency: dict[str, Any] | None
    failure: str | None  # parity outside thresholds
    manifest: BuildManifest


def make(local: LocalModel, backend: Backend, name: str, version: int, out: Path) -> Outcome:
    out.mkdir(parents=True, exist_ok=True)
    trees = next((f for f in TREE_FLAVORS if f in local.flavors), None)
    if "sklearn" in local.flavors:  # LGBM*/XGB* estimators logged with mlflow.sklearn too
        loaded = load_sklearn(local)
    elif trees is not None:  # a Booster, or LightGBM's / XGBoost's scikit-learn API
        loaded = load_trees(local, trees)
    else:
        flavors = ", ".join(f for f in local.flavors if f != "python_function") or "python_function"
        return _pyfunc_build(local, backend, name, version, out, f"no ONNX converter for flavor {flavors}")
    try:
        estimator = as_estimator(loaded)  # a Booster is called like its library's scikit-learn API
        example, columns, integers = _example_matrix(local, estimator)
        fp32 = to_onnx(estimator, _n_features(estimator, example))
    except ConversionUnsupported as exc:
        return _pyfunc_build(local, backend, name, version, out, str(exc))
    return _onnx_build(estimator, fp32, example, columns, integers, backend, name, version, out)


# --- ONNX builds -----------------------------------------------------------------------------


def _pandas() -> Any:
    import pandas  # imported lazily: only build jobs need it

    return pandas


def _n_features(estimator: Any, example: NDArray[np.float64] | None) -> int:
    declared = getattr(estimator, "n_features_in_", None)
    if declared is not None:
        if example is not None and example.shape[1] != int(declared):
            raise ConversionUnsupported(
                f"the input example has {example.shape[1]} columns, the model expects {declared}"
            )
        return int(declared)
    if example is None:
        raise ConversionUnsupported("neither the model nor an input example says how many features it takes")
    return int(example.shape[1])


def _example_matrix(
    local: LocalModel, estimator: Any
) -> tuple[NDArray[np.float64] | None, list[str] | None, list[bool] | None]:
    """The input example as float rows in the estimator's column order (None: no example)."""
    pd = _pandas()

    names = getattr(estimator, "feature_names_in_", None)
    columns = [str(c) for c in names] if names is not None else local.input_columns
    example = local.input_example
    if example is None:
        return None, columns, None
    if isinstance(example, dict | list):
        try:
            example = pd.DataFrame(example) if isinstance(example, dict) else np.asarray(example)
        except ValueError as exc:
            raise ConversionUnsupported(f"the input example is not a table ({exc})") from None
    if isinstance(example, pd.DataFrame):
        order = (
            columns if columns and set(columns) <= set(example.columns) else [str(c) for c in example.columns]
        )
        for column in order:
            if example[column].dtype.kind not in "biuf":
                raise ConversionUnsupported(
                    f"column {column!r} is {example[column].dtype}, not numeric: the ONNX build takes one "
                    f"float tensor"
                )
        frame = example[order]
        kinds = [frame[c].dtype.kind in "biu" for c in order]
        return frame.to_numpy(dtype=np.float64), order, kinds
    array = np.asarray(example)
    if array.dtype.kind not in "biuf":
        raise ConversionUnsupported(f"the input example is {array.dtype}, not numeric")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ConversionUnsupported(f"the input example has shape {array.shape}, not rows x features")
    integers: list[bool] | None = (
        [array.dtype.kind in "biu"] * array.shape[1] if array.dtype.kind in "biu" else local.integer_columns
    )
    return array.astype(np.float64), columns, integers


@dataclass(frozen=True)
class _Predictions:
    values: NDArray[Any]
    labels: NDArray[Any] | None


def _reference(estimator: Any, columns: list[str] | None) -> Callable[[NDArray[np.float32]], _Predictions]:
    pd = _pandas()

    named = getattr(estimator, "feature_names_in_", None) is not None and columns is not None

    def predict(rows: NDArray[np.float32]) -> _Predictions:
        data: Any = rows.astype(np.float64)
        if named:
            data = pd.DataFrame(data, columns=columns)
        if is_classifier(estimator):
            return _Predictions(
                np.asarray(estimator.predict_proba(data)), np.asarray(estimator.predict(data))
            )
        return _Predictions(np.asarray(estimator.predict(data)), None)

    return predict


def _candidate(session: Any, model: OnnxModel) -> Callable[[NDArray[np.float32]], _Predictions]:
    def predict(rows: NDArray[np.float32]) -> _Predictions:
        results = dict(zip(model.output_names, session.run(None, {model.input_name: rows}), strict=True))
        if model.proba_output is not None:
            return _Predictions(results[model.proba_output], results.get(model.label_output or ""))
        return _Predictions(results[model.output_names[0]], None)

    return predict


def _profile(predict: Callable[[NDArray[np.float32]], object], rows: NDArray[np.float32]) -> dict[str, Any]:
    """Median latency at batch 1 and 64 (rows recycled if fewer), per call and per row."""
    profile: dict[str, Any] = {}
    for batch, runs in LATENCY_RUNS.items():
        data = np.ascontiguousarray(np.resize(rows, (batch, rows.shape[1])).astype(np.float32))
        for _ in range(WARMUP_RUNS):
            predict(data)
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            predict(data)
            timings.append(time.perf_counter() - start)
        p50 = parity.median_ms(timings)
        profile[f"batch_{batch}"] = {
            "p50_ms": round(p50, 4),
            "p50_ms_per_row": round(p50 / batch, 5),
            "runs": runs,
        }
    return profile


def _onnx_build(
    estimator: Any,
    fp32: OnnxModel,
    example: NDArray[np.float64] | None,
    columns: list[str] | None,
    integers: list[bool] | None,
    backend: Backend,
    name: str,
    version: int,
    out: Path,
) -> Outcome:
    import onnxruntime as ort

    built = at_precision(fp32, backend.default_precision)
    notes = list(built.notes)
    (out / ONNX_FILE).write_bytes(built.model.SerializeToString())
    choice = backend.providers(ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(out / ONNX_FILE), sess_options=options, providers=choice.providers)
    provider = session.get_providers()[0]
    if choice.note:
        notes.append(choice.note)
    if provider != choice.providers[0]:
        notes.append(f"ONNX Runtime could not start {choice.providers[0]} and ran on {provider}")

    if example is None:
        notes.append("the version has no input example: parity ran on standard-normal rows only")
        sample = np.random.default_rng(parity.SAMPLE_SEED).normal(size=(parity.SAMPLE_ROWS, fp32.n_features))
        sets = {"sample": sample}
    else:
        sets = {"input_example": example, "sample": parity.sample_around(example, integer_columns=integers)}
    reference, candidate = _reference(estimator, columns), _candidate(session, built)
    diffs: dict[str, parity.Diff] = {}
    for label, rows in sets.items():
        rows32 = np.ascontiguousarray(rows.astype(np.float32))
        want, got = reference(rows32), candidate(rows32)
        diffs[label] = parity.compare(
            want.values, got.values, reference_labels=want.labels, candidate_labels=got.labels
        )
    overall = parity.combine(list(diffs.values()))
    verdict = parity.judge(
        overall,
        max_abs_diff=backend.parity.max_abs_diff,
        min_label_agreement=backend.parity.min_label_agreement,
    )
    report = {
        **overall.as_dict(),
        "passed": verdict.passed,
        "thresholds": backend.parity.model_dump(),
        "sets": {label: diff.as_dict() for label, diff in diffs.items()},
        "sample_seed": parity.SAMPLE_SEED,
        "provider": provider,
        "emulated": choice.emulated,
        "changed_nodes": built.changed_nodes,
        "compute_nodes": built.compute_nodes,
    }
    timing_rows = np.ascontiguousarray(sets["sample"].astype(np.float32))
    latency = {
        "provider": provider,
        **_profile(candidate, timing_rows),
        "original": _profile(reference, timing_rows),
    }
    failure = None
    if not verdict.passed:
        failure = f"parity outside the {backend.name} thresholds: " + "; ".join(verdict.reasons)
    manifest = BuildManifest(
        model_name=name,
        version=version,
        backend=backend.name,
        precision=built.precision,
        format="onnx",
        runtime_provider=backend.runtime_provider,
        emulated=choice.emulated,
        model_uri=f"models:/{name}/{version}",
        input_name=built.input_name,
        input_columns=columns,
        n_features=built.n_features,
        input_dtype="float32",
        output_names=built.output_names,
        label_output=built.label_output,
        proba_output=built.proba_output,
        classes=built.classes,
        max_batch=backend.max_batch,
        max_wait_ms=backend.max_wait_ms,
        note="; ".join(notes),
    )
    return Outcome(
        format="onnx",
        precision=built.precision,
        provider=provider,
        emulated=choice.emulated,
        notes=notes,
        parity=report,
        latency=latency,
        failure=failure,
        manifest=manifest,
    )


# --- pyfunc builds (CPU-only) ----------------------------------------------------------------


def _pyfunc_build(
    local: LocalModel,
    backend: Backend,
    name: str,
    version: int,
    out: Path,
    reason: str,
) -> Outcome:
    """No ONNX converter: the build is a copy of the MLflow model, served by pyfunc on the CPU.

    The copy (`mlflow_model/`) makes the build self-contained, like an ONNX build: the
    model server loads it without reaching MLflow.
    """
    notes = [f"CPU-only pyfunc build: {reason}"]
    if backend.runtime_provider != CPU_PROVIDER:
        notes.append(f"the {backend.name} backend serves it on the CPU, not with {backend.runtime_provider}")
    latency: dict[str, Any] | None = None
    checked: dict[str, Any] = {
        "checked": False,
        "passed": True,
        "reason": "the pyfunc build runs the original MLflow model: nothing to compare",
    }
    if local.input_example is None:
        notes.append("no input example: latency not profiled")
    else:
        model = load_pyfunc(local)
        try:
            latency = {"provider": "mlflow.pyfunc", **_profile_pyfunc(model, local.input_example)}
            checked["input_example_runs"] = True
        except Exception as exc:
            raise InvalidInput(f"the pyfunc model fails on its own input example: {str(exc)[:300]}") from None
    shutil.copytree(local.path, out / PYFUNC_DIR, dirs_exist_ok=True)
    manifest = BuildManifest(
        model_name=name,
        version=version,
        backend=backend.name,
        precision="fp32",
        format="pyfunc",
        runtime_provider=CPU_PROVIDER,
        emulated=False,
        model_uri=f"models:/{name}/{version}",
        input_columns=local.input_columns,
        n_features=len(local.input_columns) if local.input_columns else None,
        output_names=["predictions"],
        label_output="predictions",
        max_batch=backend.max_batch,
        max_wait_ms=backend.max_wait_ms,
        note="; ".join(notes),
    )
    return Outcome(
        format="pyfunc",
        precision="fp32",
        provider=CPU_PROVIDER,
        emulated=False,
        notes=notes,
        parity=checked,
        latency=latency,
        failure=None,
        manifest=manifest,
    )


def _profile_pyfunc(model: Any, example: Any) -> dict[str, Any]:
    pd = _pandas()

    profile: dict[str, Any] = {}
    for batch, runs in LATENCY_RUNS.items():
        if isinstance(example, pd.DataFrame):
            data: Any = example.iloc[np.resize(np.arange(len(example)), batch)].reset_index(drop=True)
        elif isinstance(example, np.ndarray) and example.ndim >= 1:
            data = example[np.resize(np.arange(example.shape[0]), batch)]
        else:
            if batch != 1:
                continue
            data = example
        model.predict(data)
        timings = []
        for _ in range(min(runs, 20)):
            start = time.perf_counter()
            model.predict(data)
            timings.append(time.perf_counter() - start)
        p50 = parity.median_ms(timings)
        profile[f"batch_{batch}"] = {
            "p50_ms": round(p50, 4),
            "p50_ms_per_row": round(p50 / batch, 5),
            "runs": len(timings),
        }
    return profile
