"""canary, shadow and alias-following: canaries, shadows, shadow_comparisons, deployment_follows

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shadow_comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("candidate", sa.String(length=63), nullable=False),
        sa.Column("primary_deployment", sa.String(length=63), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("agreement", sa.Double(), nullable=True),
        sa.Column("max_abs_diff", sa.Double(), nullable=True),
        sa.Column("rank_overlap", sa.Double(), nullable=True),
        sa.Column("primary_latency_ms", sa.Double(), nullable=False),
        sa.Column("candidate_latency_ms", sa.Double(), nullable=True),
        sa.Column("candidate_status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_comparisons")),
    )
    with op.batch_alter_table("shadow_comparisons", schema=None) as batch_op:
        batch_op.create_index(
            "ix_shadow_comparisons_endpoint_candidate_ts", ["endpoint", "candidate", "ts"], unique=False
        )

    op.create_table(
        "canaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("stable", sa.String(length=63), nullable=False),
        sa.Column("candidate", sa.String(length=63), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("hold_seconds", sa.Double(), nullable=False),
        sa.Column("hold_requests", sa.Integer(), nullable=True),
        sa.Column("max_error_rate", sa.Double(), nullable=False),
        sa.Column("max_p99_ratio", sa.Double(), nullable=True),
        sa.Column("max_p99_added_ms", sa.Double(), nullable=True),
        sa.Column("min_requests", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("baseline", sa.JSON(), nullable=False),
        sa.Column("reading", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_canaries_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canaries")),
    )
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_canaries_endpoint_id"), ["endpoint_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_canaries_state"), ["state"], unique=False)

    op.create_table(
        "shadows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("candidate", sa.String(length=63), nullable=False),
        sa.Column("share", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_by", sa.String(length=64), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_shadows_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadows")),
    )
    with op.batch_alter_table("shadows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shadows_endpoint_id"), ["endpoint_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shadows_state"), ["state"], unique=False)

    op.create_table(
        "deployment_follows",
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_follows_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment_id", name=op.f("pk_deployment_follows")),
    )
    with op.batch_alter_table("deployment_follows", schema=None) as batch_op:
        batch_op.create_index("ix_deployment_follows_model_alias", ["model_name", "alias"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deployment_follows", schema=None) as batch_op:
        batch_op.drop_index("ix_deployment_follows_model_alias")

    op.drop_table("deployment_follows")
    with op.batch_alter_table("shadows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shadows_state"))
        batch_op.drop_index(batch_op.f("ix_shadows_endpoint_id"))

    op.drop_table("shadows")
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_canaries_state"))
        batch_op.drop_index(batch_op.f("ix_canaries_endpoint_id"))

    op.drop_table("canaries")
    with op.batch_alter_table("shadow_comparisons", schema=None) as batch_op:
        batch_op.drop_index("ix_shadow_comparisons_endpoint_candidate_ts")

    op.drop_table("shadow_comparisons")
