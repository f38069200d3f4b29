"""registry: MLflow cache, evidence, policies, alias history, builds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 21:46:27.741050
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alias_moves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_moves")),
    )
    with op.batch_alter_table("alias_moves", schema=None) as batch_op:
        batch_op.create_index("ix_alias_moves_model_alias", ["model_name", "alias"], unique=False)

    op.create_table(
        "builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("precision", sa.String(length=8), nullable=True),
        sa.Column("artifact_uri", sa.Text(), nullable=True),
        sa.Column("parity", sa.JSON(), nullable=True),
        sa.Column("latency", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_builds")),
    )
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.create_index("ix_builds_model_version", ["model_name", "version"], unique=False)

    op.create_table(
        "cached_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("version_count", sa.Integer(), nullable=False),
        sa.Column("mlflow_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cached_models")),
        sa.UniqueConstraint("name", name=op.f("uq_cached_models_name")),
    )
    with op.batch_alter_table("cached_models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cached_models_team"), ["team"], unique=False)

    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
    )
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.create_index(
            "ix_evidence_model_version_kind", ["model_name", "version", "kind"], unique=False
        )

    op.create_table(
        "promotion_locks",
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("target_version", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "alias", name=op.f("pk_promotion_locks")),
    )
    op.create_table(
        "promotion_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("gates", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_policies")),
        sa.UniqueConstraint("model_name", "alias", name=op.f("uq_promotion_policies_model_name")),
    )
    op.create_table(
        "cached_aliases",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["cached_models.id"],
            name=op.f("fk_cached_aliases_model_id_cached_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "alias", name=op.f("pk_cached_aliases")),
    )
    with op.batch_alter_table("cached_aliases", schema=None) as batch_op:
        batch_op.create_index("ix_cached_aliases_alias", ["alias"], unique=False)

    op.create_table(
        "cached_model_tags",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["cached_models.id"],
            name=op.f("fk_cached_model_tags_model_id_cached_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "key", name=op.f("pk_cached_model_tags")),
    )
    with op.batch_alter_table("cached_model_tags", schema=None) as batch_op:
        batch_op.create_index("ix_cached_model_tags_key_value", ["key", "value"], unique=False)

    op.create_table(
        "cached_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("mlflow_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["cached_models.id"],
            name=op.f("fk_cached_versions_model_id_cached_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cached_versions")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_cached_versions_model_id")),
    )
    with op.batch_alter_table("cached_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cached_versions_model_id"), ["model_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cached_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cached_versions_model_id"))

    op.drop_table("cached_versions")
    with op.batch_alter_table("cached_model_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_cached_model_tags_key_value")

    op.drop_table("cached_model_tags")
    with op.batch_alter_table("cached_aliases", schema=None) as batch_op:
        batch_op.drop_index("ix_cached_aliases_alias")

    op.drop_table("cached_aliases")
    op.drop_table("promotion_policies")
    op.drop_table("promotion_locks")
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_index("ix_evidence_model_version_kind")

    op.drop_table("evidence")
    with op.batch_alter_table("cached_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cached_models_team"))

    op.drop_table("cached_models")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index("ix_builds_model_version")

    op.drop_table("builds")
    with op.batch_alter_table("alias_moves", schema=None) as batch_op:
        batch_op.drop_index("ix_alias_moves_model_alias")

    op.drop_table("alias_moves")
