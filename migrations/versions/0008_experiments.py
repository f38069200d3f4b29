"""experiments: definitions over an endpoint's split, result snapshots, adaptive allocations

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:11:41
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=63), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("unit_key", sa.String(length=64), nullable=False),
        sa.Column("arms", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("hypothesis", sa.String(length=16), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("margin_type", sa.String(length=8), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("power", sa.Float(), nullable=False),
        sa.Column("mde", sa.Float(), nullable=True),
        sa.Column("planned_n_per_arm", sa.Integer(), nullable=True),
        sa.Column("planned_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attribution_seconds", sa.Integer(), nullable=False),
        sa.Column("allocation", sa.String(length=16), nullable=False),
        sa.Column("allocation_floor", sa.Integer(), nullable=False),
        sa.Column("allocation_every_seconds", sa.Integer(), nullable=False),
        sa.Column("promote_alias", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("previous_weights", sa.JSON(), nullable=True),
        sa.Column("previous_salt", sa.String(length=64), nullable=True),
        sa.Column("verdict", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_by", sa.String(length=64), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("concluded_by", sa.String(length=64), nullable=True),
        sa.Column("concluded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reallocated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint"], ["endpoints.name"], name=op.f("fk_experiments_endpoint_endpoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("key", name=op.f("uq_experiments_key")),
    )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiments_endpoint"), ["endpoint"], unique=False)
        batch_op.create_index(batch_op.f("ix_experiments_state"), ["state"], unique=False)

    op.create_table(
        "allocation_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("posterior", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_allocation_changes_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation_changes")),
    )
    with op.batch_alter_table("allocation_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_allocation_changes_experiment_id"), ["experiment_id"], unique=False
        )

    op.create_table(
        "experiment_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arm", sa.String(length=63), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("sum_squares", sa.Float(), nullable=False),
        sa.Column("sum_x", sa.Float(), nullable=True),
        sa.Column("sum_x_squares", sa.Float(), nullable=True),
        sa.Column("sum_products", sa.Float(), nullable=True),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("absolute_lift", sa.Float(), nullable=True),
        sa.Column("relative_lift", sa.Float(), nullable=True),
        sa.Column("relative_lower", sa.Float(), nullable=True),
        sa.Column("relative_upper", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_results_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_results")),
    )
    with op.batch_alter_table("experiment_results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_experiment_results_experiment_metric_ts", ["experiment_id", "metric", "ts"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("experiment_results", schema=None) as batch_op:
        batch_op.drop_index("ix_experiment_results_experiment_metric_ts")

    op.drop_table("experiment_results")
    with op.batch_alter_table("allocation_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocation_changes_experiment_id"))

    op.drop_table("allocation_changes")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_state"))
        batch_op.drop_index(batch_op.f("ix_experiments_endpoint"))

    op.drop_table("experiments")
