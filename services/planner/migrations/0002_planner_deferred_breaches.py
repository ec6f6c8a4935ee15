"""Store breaches deferred by a cooldown, and why a version was marked bad.

Revision ID: 9b605b014f64
Revises: 099211b93d65
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "9b605b014f64"
down_revision = "099211b93d65"
branch_labels = None
depends_on = None

DEFERRED_WHERE = "recheck_at IS NOT NULL AND rechecked_at IS NULL"
SUPPRESSION_COLUMNS = ("breach_json", "version", "recheck_at", "rechecked_at", "recheck_outcome")


def upgrade() -> None:
    op.add_column("planner_suppressions", sa.Column("breach_json", sa.Text, nullable=True))
    op.add_column("planner_suppressions", sa.Column("version", sa.String(128), nullable=True))
    op.add_column(
        "planner_suppressions",
        sa.Column("recheck_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "planner_suppressions",
        sa.Column("rechecked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "planner_suppressions", sa.Column("recheck_outcome", sa.String(16), nullable=True)
    )
    op.create_index(
        "ix_planner_suppressions_deferred",
        "planner_suppressions",
        ["recheck_at"],
        sqlite_where=sa.text(DEFERRED_WHERE),
        postgresql_where=sa.text(DEFERRED_WHERE),
    )
    op.add_column(
        "planner_bad_versions",
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    # Batch mode copies the table on SQLite, whose ALTER TABLE cannot drop every kind of column.
    with op.batch_alter_table("planner_bad_versions") as batch:
        batch.drop_column("reason")
    op.drop_index("ix_planner_suppressions_deferred", "planner_suppressions")
    with op.batch_alter_table("planner_suppressions") as batch:
        for name in SUPPRESSION_COLUMNS:
            batch.drop_column(name)
