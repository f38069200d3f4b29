"""The `registry.build` job: one queued build becomes a build directory and a finished row.

The steps themselves (`steps.py`) touch no database; this module moves the row through
queued → running → succeeded or failed, and swaps the directory into place.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from atoll.backends import Catalog
from atoll.db import utcnow
from atoll.errors import InvalidInput
from atoll.registry.builds import steps
from atoll.registry.builds.service import FAILED, RUNNING, SUCCEEDED
from atoll.registry.mlflow.adapter import MlflowRegistry
from atoll.registry.models import Build

MLFLOW_BUILDS_PATH = "atoll-builds"


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
    outcome: steps.Outcome | None = None
    error: str | None = None
    final: Path | None = None
    mlflow_uri: str | None = None
    try:
        backend = catalog.get(backend_name)
        found = registry.get_version(name, str(version))
        with tempfile.TemporaryDirectory(prefix="atoll-build-") as work:
            local = registry.download_model(name, str(version), Path(work))
            outcome = steps.make(local, backend, name, version, staging)
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
    name, _, version = model_uri.removeprefix("models:/").rpartition("/")
    if not model_uri.startswith("models:/") or not name or not version.isdigit():
        raise InvalidInput(f"--model-uri {model_uri!r}: use models:/NAME/VERSION")
    with tempfile.TemporaryDirectory(prefix="atoll-build-") as work:
        local = registry.download_model(name, version, Path(work))
        outcome = steps.make(local, catalog.get(backend), name, int(version), out)
    if outcome.failure is not None:
        raise InvalidInput(f"{model_uri} for {backend}: {outcome.failure}")
    outcome.manifest.save(out)
    return out
