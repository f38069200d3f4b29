"""monitor labels: a monitor's label spec and each run row's model quality

Both are JSON on the rows they belong to (not a table of their own): a run row's quality
is a handful of numbers read and written with the row, never queried by value, and a
monitor has at most one label spec.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("monitors") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=True))
    with op.batch_alter_table("monitor_runs") as batch:
        batch.add_column(sa.Column("quality", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("monitor_runs") as batch:
        batch.drop_column("quality")
    with op.batch_alter_table("monitors") as batch:
        batch.drop_column("labels")
