"""Per-backend builds: what each backend of the catalog runs for a model version.

`enqueue_builds` adds one `Build` row (queued) and one durable job (`registry.build`) per
backend; the worker runs `run_build` for each. A build:

1. downloads the version's MLflow model and reads its input example and signature;
2. converts scikit-learn models to ONNX fp32 (skl2onnx, `zipmap: False`), then to the
   backend's precision (`registry.convert`): fp16 for `gpu`, int8 (`quantize_dynamic`) for
   `asic`, fp32 for `cpu`; a model with no converter gets a **pyfunc build** (format
   "pyfunc", CPU-only, the reason in `note`);
3. runs the ONNX model with the backend's `runtime_provider` where this worker has it,
   else with the catalog's `local_fallback` (gpu → CPU), else **emulated** on the plain ONNX
   Runtime CPU provider (asic: `emulated: true`); the provider that actually ran is recorded;
4. checks parity against the original MLflow model (`registry.parity`) on the version's
   input example plus 256 seeded rows drawn around it, against the catalog's thresholds,
   and profiles latency (median ms at batch 1 and batch 64);
5. keeps the build directory (`model.onnx` + `build.json`, the model server's contract)
   under `<data_dir>/builds/<model>/<version>/<backend>/` — `artifact_uri` is that local
   path — and, when the version has an MLflow run, logs it to the run at
   `atoll-builds/<backend>/` (`mlflow_artifact_uri`).

A build outside its parity thresholds is `failed` with the numbers in `error` and
`parity`; its files stay under `<...>/<version>/failed/<backend>-<build id>/` so the
directory a deployment may be serving is replaced only by a build that passed.
See docs/backends.md.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.backends import Backend, Catalog, Precision, cached_catalog
from atoll.db import utcnow
from atoll.errors import InvalidInput
from atoll.jobs import enqueue
from atoll.registry import parity
from atoll.registry.build_manifest import ONNX_FILE, BuildManifest
from atoll.registry.convert import (
    ConversionUnsupported,
    OnnxModel,
    at_precision,
    is_classifier,
    sklearn_to_onnx,
)
from atoll.registry.mlflow_adapter import LocalModel, MlflowRegistry
from atoll.registry.models import Build

BUILD_JOB = "registry.build"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
CPU_PROVIDER = "CPUExecutionProvider"
# The catalog names local executors; these are the ONNX Runtime providers they stand for.
EXECUTOR_PROVIDERS = {"onnxruntime-cpu": CPU_PROVIDER, "onnxruntime-cuda": "CUDAExecutionProvider"}
MLFLOW_BUILDS_PATH = "atoll-builds"
LATENCY_RUNS = {1: 50, 64: 20}
WARMUP_RUNS = 3


class BuildRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    model_name: str
    version: int
    backend: str
    status: str
    format: str | None
    precision: str | None
    provider: str | None
    emulated: bool
    note: str
    artifact_uri: str | None = Field(description="Local build directory (model.onnx + build.json)")
    mlflow_artifact_uri: str | None = Field(description="The same files on the version's MLflow run")
    parity: dict[str, Any] | None
    latency: dict[str, Any] | None
    error: str | None
    job_id: int | None
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BuildsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backends: list[str] | None = Field(default=None, description="Backends to (re)build; default: all")


# --- enqueueing and listing ----------------------------------------------------------------


def default_catalog() -> Catalog:
    from atoll.settings import get_settings

    return cached_catalog(get_settings().backends_file)


def _dedupe_key(name: str, version: int, backend: str, attempt: int) -> str:
    key = f"{BUILD_JOB}:{name}/{version}/{backend}/{attempt}"
    if len(key) <= 255:
        return key
    digest = hashlib.sha256(name.encode()).hexdigest()[:24]
    return f"{BUILD_JOB}:{digest}/{version}/{backend}/{attempt}"


def enqueue_builds(
    session: Session,
    *,
    name: str,
    version: int,
    backends: list[str] | None = None,
    actor: Principal | None,
    catalog: Catalog | None = None,
) -> list[Build]:
    """Queue one build (row + durable job) per backend; every call is a new attempt.

    `backends` defaults to every backend of the catalog. The jobs exist only if the caller
    commits, like the rows and the audit event.
    """
    catalog = catalog or default_catalog()
    wanted = list(dict.fromkeys(backends)) if backends else catalog.names()
    if not wanted:
        raise InvalidInput("backends: name at least one backend (or leave it out to build all)")
    for backend in wanted:
        if backend not in catalog.backends:
            known = ", ".join(catalog.names())
            raise InvalidInput(f"backends: {backend!r} is not in the catalog (known: {known})")
    created = []
    for backend in wanted:
        build = Build(
            model_name=name,
            version=version,
            backend=backend,
            status=QUEUED,
            requested_by=actor.username if actor else None,
        )
        session.add(build)
        session.flush()
        job = enqueue(
            session,
            kind=BUILD_JOB,
            payload={"build_id": build.id, "model": name, "version": version, "backend": backend},
            max_attempts=3,
            dedupe_key=_dedupe_key(name, version, backend, build.id),
        )
        build.job_id = job.id
        created.append(build)
    audit.record(
        session,
        actor=actor,
        action="build.enqueue",
        target_type="model_version",
        target_id=f"{name}/{version}",
        summary={"backends": wanted, "build_ids": [b.id for b in created]},
    )
    session.flush()
    return created


def list_builds(session: Session, name: str, version: int) -> list[Build]:
    """Every build of a version, newest first."""
    return list(
        session.scalars(
            select(Build).where(Build.model_name == name, Build.version == version).order_by(Build.id.desc())
        )
    )


# --- providers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderChoice:
    providers: list[str]  # what the ONNX Runtime session is asked for, in order
    emulated: bool
    note: str


def choose_provider(backend: Backend, available: list[str]) -> ProviderChoice:
    """The backend's own provider where present; else its local fallback; else emulation."""
    wanted = backend.runtime_provider
    if wanted in available:
        chain = [wanted] if wanted == CPU_PROVIDER else [wanted, CPU_PROVIDER]
        return ProviderChoice(chain, emulated=False, note="")
    if backend.local_fallback:
        fallback = EXECUTOR_PROVIDERS.get(backend.local_fallback, CPU_PROVIDER)
        if fallback in available:
            return ProviderChoice(
                [fallback],
                emulated=False,
                note=(
                    f"{wanted} is not available on this worker: parity and latency ran on {fallback} "
                    f"(catalog local_fallback {backend.local_fallback!r}); the model server uses {wanted} "
                    f"where the device exists"
                ),
            )
    return ProviderChoice(
        [CPU_PROVIDER],
        emulated=True,
        note=(
            f"no {backend.accelerator} device here ({wanted} is not available): emulated on the CPU "
            f"({backend.local_executor}: plain ONNX Runtime {CPU_PROVIDER} running the "
            f"{backend.default_precision} graph); runtime_provider {wanted!r} is the plug-in point "
            f"for the real device"
        ),
    )


# --- the job --------------------------------------------------------------------------------


def build_dir(data_dir: Path, name: str, version: int, backend: str) -> Path:
    return data_dir.resolve() / "builds" / name / str(version) / backend


@dataclass
class _Outcome:
    format: str
    precision: Precision
    provider: str
    emulated: bool
    notes: list[str]
    parity: dict[str, Any] | None
    latency: dict[str, Any] | None
    failure: str | None  # parity outside thresholds
    manifest: BuildManifest


def run_build(
    session: Session, registry: MlflowRegistry, catalog: Catalog, data_dir: Path, payload: dict[str, Any]
) -> dict[str, Any]:
    """The `registry.build` job: queued/running → succeeded or failed, never half-written.

    Every problem (no converter aside, which gives a pyfunc build) ends as a `failed` build
    with the reason in `error`; the job itself succeeds, so a failed build is not retried
    on its own: `atoll builds MODEL VERSION --rebuild` makes a new attempt.
    """
    build = session.get(Build, int(payload["build_id"]))
    if build is None:
        return {"build_id": payload["build_id"], "skipped": "the build row no longer exists"}
    if build.status in (SUCCEEDED, FAILED):
        return {"build_id": build.id, "status": build.status, "skipped": "already finished"}
    build.status, build.started_at = RUNNING, utcnow()
    session.commit()  # visible as running while it works
    build_id = build.id
    name, version, backend_name = build.model_name, build.version, build.backend
    versions_dir = data_dir.resolve() / "builds" / name / str(version)
    staging = versions_dir / f".staging-{backend_name}-{build_id}-{uuid.uuid4().hex[:6]}"
    outcome: _Outcome | None = None
    error: str | None = None
    final: Path | None = None
    mlflow_uri: str | None = None
    try:
        backend = catalog.get(backend_name)
        found = registry.get_version(name, str(version))
        with tempfile.TemporaryDirectory(prefix="atoll-build-") as work:
            local = registry.download_model(name, str(version), Path(work))
            outcome = _make(registry, local, backend, name, version, staging)
        outcome.manifest.save(staging)
        if outcome.failure is None:
            if found.run_id:
                mlflow_uri = registry.log_build(found.run_id, staging, f"{MLFLOW_BUILDS_PATH}/{backend_name}")
            final = _swap_into(staging, versions_dir / backend_name)
        else:
            error = outcome.failure
    except Exception as exc:
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        error = f"{type(exc).__name__}: {detail}"[:4000]
    if final is None and staging.exists():
        final = versions_dir / "failed" / f"{backend_name}-{build_id}"
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    session.rollback()  # nothing pending; refresh the row after a possible DB error
    build = session.get(Build, build_id)
    if build is None:
        return {"build_id": build_id, "skipped": "the build row was deleted while it ran"}
    build.status = FAILED if error else SUCCEEDED
    build.error = error
    build.finished_at = utcnow()
    build.artifact_uri = str(final) if final else None
    build.mlflow_artifact_uri = mlflow_uri
    if outcome is not None:
        build.format = outcome.format
        build.precision = outcome.precision
        build.provider = outcome.provider
        build.emulated = outcome.emulated
        build.note = "; ".join(outcome.notes)
        build.parity = outcome.parity
        build.latency = outcome.latency
    session.flush()
    return {
        "build_id": build.id,
        "backend": build.backend,
        "status": build.status,
        "format": build.format,
        "precision": build.precision,
        "provider": build.provider,
        "error": (build.error or "")[:500] or None,
    }


def _swap_into(staging: Path, final: Path) -> Path:
    """Replace the backend's build directory with the new one (rename, not copy)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:6]}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _make(
    registry: MlflowRegistry, local: LocalModel, backend: Backend, name: str, version: int, out: Path
) -> _Outcome:
    out.mkdir(parents=True, exist_ok=True)
    if "sklearn" not in local.flavors:
        flavors = ", ".join(f for f in local.flavors if f != "python_function") or "python_function"
        return _pyfunc_build(
            registry, local, backend, name, version, f"no ONNX converter for flavor {flavors}"
        )
    estimator = registry.load_sklearn(local)
    try:
        example, columns, integers = _example_matrix(local, estimator)
        fp32 = sklearn_to_onnx(estimator, _n_features(estimator, example))
    except ConversionUnsupported as exc:
        return _pyfunc_build(registry, local, backend, name, version, str(exc))
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
) -> _Outcome:
    import onnxruntime as ort

    built = at_precision(fp32, backend.default_precision)
    notes = list(built.notes)
    (out / ONNX_FILE).write_bytes(built.model.SerializeToString())
    choice = choose_provider(backend, ort.get_available_providers())
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
    return _Outcome(
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
    registry: MlflowRegistry, local: LocalModel, backend: Backend, name: str, version: int, reason: str
) -> _Outcome:
    """No ONNX converter: the build is the MLflow model itself, served by pyfunc on the CPU."""
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
        model = registry.load_pyfunc(local)
        try:
            latency = {"provider": "mlflow.pyfunc", **_profile_pyfunc(model, local.input_example)}
            checked["input_example_runs"] = True
        except Exception as exc:
            raise InvalidInput(f"the pyfunc model fails on its own input example: {str(exc)[:300]}") from None
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
        max_batch=backend.max_batch,
        max_wait_ms=backend.max_wait_ms,
        note="; ".join(notes),
    )
    return _Outcome(
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


def handler(
    registry: MlflowRegistry, catalog: Catalog, data_dir: Path
) -> Callable[[Session, dict[str, Any]], dict[str, Any]]:
    """The job handler the worker registers for `registry.build`."""

    def run(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return run_build(session, registry, catalog, data_dir, payload)

    return run


__all__ = [
    "BUILD_JOB",
    "BuildRead",
    "BuildsRequest",
    "choose_provider",
    "enqueue_builds",
    "list_builds",
    "run_build",
]


def build_for_serving(
    registry: MlflowRegistry, catalog: Catalog, model_uri: str, backend: str, out: Path
) -> Path:
    """Make a build directory for `atoll serve --model-uri models:/NAME/VERSION` (no DB row).

    Same conversion and parity check as a build job; a build outside its thresholds is
    refused with the numbers.
    """
    from atoll.errors import InvalidInput

    name, _, version = model_uri.removeprefix("models:/").rpartition("/")
    if not model_uri.startswith("models:/") or not name or not version.isdigit():
        raise InvalidInput(f"--model-uri {model_uri!r}: use models:/NAME/VERSION")
    with tempfile.TemporaryDirectory(prefix="atoll-build-") as work:
        local = registry.download_model(name, version, Path(work))
        outcome = _make(registry, local, catalog.get(backend), name, int(version), out)
    if outcome.failure is not None:
        raise InvalidInput(f"{model_uri} for {backend}: {outcome.failure}")
    outcome.manifest.save(out)
    return out
