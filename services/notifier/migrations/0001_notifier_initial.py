"""Create the notifier service's inbox of handled event ids.

Revision ID: c0cb306b06ef
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "c0cb306b06ef"
down_revision = None
branch_labels = ("notifier",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifier_inbox",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notifier_inbox")
