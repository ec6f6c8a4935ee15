"""Create the stats service's inbox of handled event ids.

Revision ID: bb1efcce2a72
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "bb1efcce2a72"
down_revision = None
branch_labels = ("stats",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_inbox",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stats_inbox")
