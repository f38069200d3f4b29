"""builds: format, provider, emulated, note, MLflow artifact URI, job, requester

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 22:09:07.579700
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("format", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("provider", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("emulated", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("note", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("mlflow_artifact_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("requested_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("started_at")
        batch_op.drop_column("requested_by")
        batch_op.drop_column("job_id")
        batch_op.drop_column("mlflow_artifact_uri")
        batch_op.drop_column("note")
        batch_op.drop_column("emulated")
        batch_op.drop_column("provider")
        batch_op.drop_column("format")
