"""Create the notifier's tables: inbox, stored events, delivery log, leases and incidents.

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
    op.create_table(
        "notifier_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("plan_id", sa.String(36), nullable=True),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("occurred_at", sa.Float, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_notifier_events_plan_id", "notifier_events", ["plan_id"])
    op.create_table(
        "notifier_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("plan_key", sa.String(36), nullable=False),
        sa.Column("notification_key", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("source_event_id", sa.String(36), nullable=False),
        sa.Column("coalesce_key", sa.String(120), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint(
            "channel", "plan_key", "notification_key", name="uq_notifier_delivery"
        ),
    )
    op.create_index("ix_notifier_deliveries_channel", "notifier_deliveries", ["channel"])
    op.create_index("ix_notifier_deliveries_status", "notifier_deliveries", ["status"])
    op.create_table(
        "notifier_channel_leases",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "notifier_incidents",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("last_kind", sa.String(20), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notifier_incidents")
    op.drop_table("notifier_channel_leases")
    op.drop_index("ix_notifier_deliveries_status", table_name="notifier_deliveries")
    op.drop_index("ix_notifier_deliveries_channel", table_name="notifier_deliveries")
    op.drop_table("notifier_deliveries")
    op.drop_index("ix_notifier_events_plan_id", table_name="notifier_events")
    op.drop_table("notifier_events")
    op.drop_table("notifier_inbox")
