"""experiment analysis: covering indexes for the per-unit sums (abtest/sums.py)

The sums read each unit's first exposure in a split and its outcomes of a metric inside a
time window. With these two indexes PostgreSQL reads both sides in unit order from the
indexes alone (index-only scans, a merge join, a streaming per-unit aggregate: no sort, no
heap access). They replace the narrower (split, unit_id) and (metric, unit_id) indexes,
whose every use they serve, so ingestion maintains no extra index. SQLite ignores INCLUDE.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 03:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_exposure_events_split_unit_ts",
        "exposure_events",
        ["split", "unit_id", "ts", "id"],
        postgresql_include=["deployment"],
    )
    op.drop_index("ix_exposure_events_split_unit", table_name="exposure_events")
    op.create_index(
        "ix_outcome_events_metric_unit_ts",
        "outcome_events",
        ["metric", "unit_id", "ts"],
        postgresql_include=["value"],
    )
    op.drop_index("ix_outcome_events_metric_unit", table_name="outcome_events")


def downgrade() -> None:
    op.create_index("ix_outcome_events_metric_unit", "outcome_events", ["metric", "unit_id"])
    op.drop_index("ix_outcome_events_metric_unit_ts", table_name="outcome_events")
    op.create_index("ix_exposure_events_split_unit", "exposure_events", ["split", "unit_id"])
    op.drop_index("ix_exposure_events_split_unit_ts", table_name="exposure_events")
