"""Queueing and listing builds: one `Build` row and one durable job per backend."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from atoll import audit
from atoll.auth.policy import Principal
from atoll.backends import Catalog
from atoll.errors import InvalidInput
from atoll.jobs import enqueue
from atoll.registry.models import Build

BUILD_JOB = "registry.build"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


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
    catalog: Catalog,
) -> list[Build]:
    """Queue one build (row + durable job) per backend; every call is a new attempt.

    `backends` defaults to every backend of the catalog. The jobs exist only if the caller
    commits, like the rows and the audit event.
    """
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


def has_builds(session: Session, name: str, version: int) -> bool:
    """Whether any build (any backend, any status) was ever queued for the version."""
    found = session.scalar(
        select(Build.id).where(Build.model_name == name, Build.version == version).limit(1)
    )
    return found is not None
