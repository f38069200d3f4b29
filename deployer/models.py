"""Deployer tables: deployments and their revisions and events, endpoints, their routes and history.

The database holds the desired state: a deployment's `spec` (what the service rendered
the target's objects from) and its `build_id`. Targets hold what runs; the rollout and
reconcile jobs move the one towards the other.

An endpoint's traffic is its `endpoint_routes`: (endpoint, deployment, weight) rows whose
weights sum to 100. In this issue one route has 100 (the active deployment) and the
others 0 (kept warm, blue/green); weighted splits use the same rows.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from atoll.db import Base, utcnow


def new_salt() -> str:
    return secrets.token_hex(8)


class Endpoint(Base):
    """A stable name callers use: `/endpoints/{name}/...` on the router.

    `split_salt` seeds sticky assignment: a unit goes where hash(salt, unit) falls, so the
    same salt keeps every unit where it was while weights change, and a new salt (a new
    experiment) reshuffles them. `traffic_owner` names who controls the split now
    ("canary:12", "experiment:checkout-2"); while set, only that owner may change the weights.
    """

    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    split_salt: Mapped[str] = mapped_column(String(64), default=new_salt)
    traffic_owner: Mapped[str | None] = mapped_column(String(128))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    """A build running on a target, under a DNS-1123 name that names every object it owns."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_model_version", "model_name", "version"),
        CheckConstraint("replicas >= 1", name="replicas_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int]
    backend: Mapped[str] = mapped_column(String(32))
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"), index=True)
    target: Mapped[str] = mapped_column(String(16))  # local | kubernetes
    replicas: Mapped[int] = mapped_column(default=1)
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the desired settings
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(default=1)
    address: Mapped[str | None] = mapped_column(String(512))  # where the router forwards
    switch_on_ready: Mapped[bool] = mapped_column(default=True)
    rollout_job_id: Mapped[int | None]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime | None]
    undeployed_at: Mapped[datetime | None]


class DeploymentRevision(Base):
    """One desired state a deployment had: rollback re-applies the previous one as a new revision."""

    __tablename__ = "deployment_revisions"
    __table_args__ = (UniqueConstraint("deployment_id", "revision"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int]
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id"))
    version: Mapped[int]
    replicas: Mapped[int]
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cause: Mapped[str] = mapped_column(String(16))  # deploy | update | rollback
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentEvent(Base):
    """What happened to a deployment, as Atoll saw it: state changes, repairs, switches."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(16))  # Normal | Warning
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int]
    actor: Mapped[str] = mapped_column(String(64))


class EndpointRoute(Base):
    """A deployment's share of an endpoint's traffic, in percent (the routes sum to 100)."""

    __tablename__ = "endpoint_routes"
    __table_args__ = (CheckConstraint("weight >= 0 AND weight <= 100", name="weight_percent"),)

    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True, unique=True
    )
    weight: Mapped[int]


class EndpointChange(Base):
    """History: every change of an endpoint's routes (weights by deployment name), who, why, which job."""

    __tablename__ = "endpoint_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # create | attach | switch | split | detach | ...
    split_salt: Mapped[str | None] = mapped_column(String(64))
    from_weights: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    to_weights: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None]


# --- progressive delivery: canaries, shadows, alias-following (issue 14) ----------------------


class Canary(Base):
    """A progressive move of an endpoint's traffic from `stable` to `candidate`, step by step.

    `steps` are the candidate's weights in percent (e.g. [5, 25, 50, 100]); `step_index` is
    the step being held (-1 before the job set the first). `baseline` holds each deployment's
    model-server counters when the step started, so the guardrails judge deltas of this step
    only; `reading` is the last judgement (the values the portal and `canary status` show).
    """

    __tablename__ = "canaries"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    stable: Mapped[str] = mapped_column(String(63))
    candidate: Mapped[str] = mapped_column(String(63))
    steps: Mapped[list[int]] = mapped_column(JSON)
    hold_seconds: Mapped[float]
    hold_requests: Mapped[int | None]
    max_error_rate: Mapped[float]
    max_p99_ratio: Mapped[float | None]
    max_p99_added_ms: Mapped[float | None]
    min_requests: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), index=True)  # running | succeeded | failed | aborted
    step_index: Mapped[int] = mapped_column(default=-1)
    step_started_at: Mapped[datetime | None]
    baseline: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reading: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    job_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Shadow(Base):
    """Mirror `share` of an endpoint's requests to `candidate`, after the caller has its answer."""

    __tablename__ = "shadows"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    candidate: Mapped[str] = mapped_column(String(63))
    share: Mapped[float]
    kind: Mapped[str] = mapped_column(String(16), default="auto")  # auto | label | score | ranking
    top_k: Mapped[int] = mapped_column(default=10)
    state: Mapped[str] = mapped_column(String(16), index=True)  # active | stopped
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_by: Mapped[str | None] = mapped_column(String(64))
    stopped_at: Mapped[datetime | None]


class ShadowComparison(Base):
    """One mirrored request: how the candidate's prediction compared with the primary's.

    Written by the router through `atoll.events.BatchWriter` (append-only, batched, off the
    request path). A candidate that failed or timed out has its status and no comparison.
    """

    __tablename__ = "shadow_comparisons"
    __table_args__ = (Index("ix_shadow_comparisons_endpoint_candidate_ts", "endpoint", "candidate", "ts"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    endpoint: Mapped[str] = mapped_column(String(63))
    candidate: Mapped[str] = mapped_column(String(63))
    primary_deployment: Mapped[str] = mapped_column(String(63))
    request_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(16))  # label | score | ranking
    agreement: Mapped[float | None]
    max_abs_diff: Mapped[float | None]
    rank_overlap: Mapped[float | None]
    primary_latency_ms: Mapped[float]
    candidate_latency_ms: Mapped[float | None]
    candidate_status: Mapped[int]  # HTTP status; 0 when no answer came (refused, timed out)
    error: Mapped[str | None] = mapped_column(Text)


class DeploymentFollow(Base):
    """A deployment that follows `model_name@alias`: it rolls when the alias moves."""

    __tablename__ = "deployment_follows"
    __table_args__ = (Index("ix_deployment_follows_model_alias", "model_name", "alias"),)

    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    model_name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
