"""Registry tables: a synced cache of MLflow, plus what MLflow has no place for.

MLflow stays the source of truth for models, versions, aliases and tags; the `cached_*`
tables only serve fast listing and search and are rebuilt by sync.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from atoll.db import Base, utcnow


class CachedModel(Base):
    __tablename__ = "cached_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    latest_version: Mapped[int] = mapped_column(default=0)
    version_count: Mapped[int] = mapped_column(default=0)
    mlflow_updated_at: Mapped[datetime]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class CachedModelTag(Base):
    __tablename__ = "cached_model_tags"
    __table_args__ = (Index("ix_cached_model_tags_key_value", "key", "value"),)

    model_id: Mapped[int] = mapped_column(
        ForeignKey("cached_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(String(500))


class CachedAlias(Base):
    __tablename__ = "cached_aliases"
    __table_args__ = (Index("ix_cached_aliases_alias", "alias"),)

    model_id: Mapped[int] = mapped_column(
        ForeignKey("cached_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int]


class CachedVersion(Base):
    __tablename__ = "cached_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("cached_models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int]
    source: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    mlflow_created_at: Mapped[datetime]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evidence(Base):
    """A fact about a version that a gate can read: an A/B verdict, drift, an approval...

    Other packages record evidence through the registry's evidence service, so the
    registry never imports abtest or monitoring.
    """

    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_model_version_kind", "model_name", "version", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int]
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(String(255))
    recorded_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class PromotionPolicy(Base):
    __tablename__ = "promotion_policies"
    __table_args__ = (UniqueConstraint("model_name", "alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256))  # "*" applies to every model
    alias: Mapped[str] = mapped_column(String(255))
    protected: Mapped[bool] = mapped_column(default=False)
    gates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasMove(Base):
    """History: every alias move, who, why, with the gate results it passed."""

    __tablename__ = "alias_moves"
    __table_args__ = (Index("ix_alias_moves_model_alias", "model_name", "alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str] = mapped_column(String(255))
    from_version: Mapped[int | None]
    to_version: Mapped[int | None]
    kind: Mapped[str] = mapped_column(String(16))  # promote | rollback | set | external
    forced: Mapped[bool] = mapped_column(default=False)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    gates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class PromotionLock(Base):
    """Held while one promotion of an alias runs; a second one at once gets 409."""

    __tablename__ = "promotion_locks"

    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    alias: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    target_version: Mapped[int]
    expires_at: Mapped[datetime]


class Build(Base):
    """What a backend runs for one version (filled by the build jobs)."""

    __tablename__ = "builds"
    __table_args__ = (Index("ix_builds_model_version", "model_name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int]
    backend: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed
    precision: Mapped[str | None] = mapped_column(String(8))
    artifact_uri: Mapped[str | None] = mapped_column(Text)
    parity: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    latency: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # Added by 0003 (see registry/builds.py and docs/backends.md):
    format: Mapped[str | None] = mapped_column(String(16))  # onnx | pyfunc (CPU-only fallback)
    provider: Mapped[str | None] = mapped_column(String(64))  # the ORT provider parity actually ran on
    emulated: Mapped[bool] = mapped_column(default=False, server_default=false())
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    mlflow_artifact_uri: Mapped[str | None] = mapped_column(Text)  # runs:/<run>/atoll-builds/<backend>
    job_id: Mapped[int | None]
    requested_by: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
