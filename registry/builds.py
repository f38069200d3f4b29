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
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.backends import Catalog, cached_catalog
from atoll.db import utcnow
from atoll.errors import InvalidInput
from atoll.jobs import enqueue
from atoll.registry import build_steps
from atoll.registry.mlflow_adapter import MlflowRegistry
from atoll.registry.models import Build

BUILD_JOB = "registry.build"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
# The catalog names local executors; these are the ONNX Runtime providers they stand for.
MLFLOW_BUILDS_PATH = "atoll-builds"


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


def build_dir(data_dir: Path, name: str, version: int, backend: str) -> Path:
    return data_dir.resolve() / "builds" / name / str(version) / backend


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
    outcome: build_steps.Outcome | None = None
    error: str | None = None
    final: Path | None = None
    mlflow_uri: str | None = None
    try:
        backend = catalog.get(backend_name)
        found = registry.get_version(name, str(version))
        with tempfile.TemporaryDirectory(prefix="atoll-build-") as work:
            local = registry.download_model(name, str(version), Path(work))
            outcome = build_steps.make(registry, local, backend, name, version, staging)
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


def handler(
    registry: MlflowRegistry, catalog: Catalog, data_dir: Path
) -> Callable[[Session, dict[str, Any]], dict[str, Any]]:
    """The job handler the worker registers for `registry.build`."""

    def run(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return run_build(session, registry, catalog, data_dir, payload)

    return run


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
        outcome = build_steps.make(registry, local, catalog.get(backend), name, int(version), out)
    if outcome.failure is not None:
        raise InvalidInput(f"{model_uri} for {backend}: {outcome.failure}")
    outcome.manifest.save(out)
    return out


__all__ = [
    "BUILD_JOB",
    "BuildRead",
    "BuildsRequest",
    "build_for_serving",
    "enqueue_builds",
    "list_builds",
    "run_build",
]
