"""traffic: split salt and owner on endpoints, salt in history, exposures by split and deployment

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("split_salt", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("traffic_owner", sa.String(length=128), nullable=True))
    # Existing endpoints get a salt of their own: their name is unique, so it is one.
    op.execute("UPDATE endpoints SET split_salt = name")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.alter_column("split_salt", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("endpoint_changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("split_salt", sa.String(length=64), nullable=True))

    # Nothing wrote exposures before this revision: the table is rebuilt in its new shape.
    with op.batch_alter_table("exposure_events", schema=None) as batch_op:
        batch_op.drop_index("ix_exposure_events_experiment_arm")
    op.drop_table("exposure_events")
    op.create_table(
        "exposure_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("split", sa.String(length=64), nullable=False),
        sa.Column("deployment", sa.String(length=63), nullable=False),
        sa.Column("unit_id", sa.String(length=128), nullable=False),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_events")),
    )
    with op.batch_alter_table("exposure_events", schema=None) as batch_op:
        batch_op.create_index("ix_exposure_events_split_unit", ["split", "unit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("exposure_events", schema=None) as batch_op:
        batch_op.drop_index("ix_exposure_events_split_unit")
    op.drop_table("exposure_events")
    op.create_table(
        "exposure_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("experiment", sa.String(length=128), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.String(length=128), nullable=False),
        sa.Column("endpoint", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exposure_events")),
    )
    with op.batch_alter_table("exposure_events", schema=None) as batch_op:
        batch_op.create_index("ix_exposure_events_experiment_arm", ["experiment", "arm"], unique=False)
    with op.batch_alter_table("endpoint_changes", schema=None) as batch_op:
        batch_op.drop_column("split_salt")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("traffic_owner")
        batch_op.drop_column("split_salt")
