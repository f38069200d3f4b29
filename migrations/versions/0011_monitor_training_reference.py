"""monitoring: the model version whose training data is a monitor's reference

A monitor whose reference is a version's training data (`reference.source =
training_data`) records which version it was loaded from, so the page can say it and a
reload after a promotion can be compared with it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (SQLite has dropped columns natively since 3.35): a batch rebuild of
# `monitors` would drop the table its references, runs and results cascade from.
def upgrade() -> None:
    op.add_column("monitors", sa.Column("reference_model", sa.String(length=256), nullable=True))
    op.add_column("monitors", sa.Column("reference_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("monitors", "reference_version")
    op.drop_column("monitors", "reference_model")
