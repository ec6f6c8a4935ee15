"""Create the planner's tables: inbox, deployments, plans, cooldowns and the outbox.

Revision ID: 099211b93d65
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "099211b93d65"
down_revision = None
branch_labels = ("planner",)
depends_on = None

ACTIVE_PLAN_WHERE = "status IN ('pending', 'in_progress')"


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "planner_inbox",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        _timestamp("handled_at"),
    )
    op.create_table(
        "planner_deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        _timestamp("deployed_at"),
        _timestamp("recorded_at"),
    )
    op.create_index(
        "ix_planner_deployments_service", "planner_deployments", ["environment", "service", "id"]
    )
    op.create_table(
        "planner_current_versions",
        sa.Column("environment", sa.String(63), primary_key=True),
        sa.Column("service", sa.String(63), primary_key=True),
        sa.Column("version", sa.String(128), nullable=False),
        _timestamp("deployed_at"),
        _timestamp("updated_at"),
    )
    op.create_table(
        "planner_bad_versions",
        sa.Column("environment", sa.String(63), primary_key=True),
        sa.Column("service", sa.String(63), primary_key=True),
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("plan_id", sa.String(36), nullable=True),
        _timestamp("marked_at"),
    )
    op.create_table(
        "planner_plans",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("from_version", sa.String(128), nullable=True),
        sa.Column("to_version", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("trigger_type", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("breach_json", sa.Text, nullable=True),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("finished_at", nullable=True),
        _timestamp("cancel_requested_at", nullable=True),
        sa.Column("cancel_requested_by", sa.String(200), nullable=True),
        sa.Column("failed_step", sa.String(32), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index(
        "uq_planner_plans_active",
        "planner_plans",
        ["environment", "service"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_PLAN_WHERE),
        postgresql_where=sa.text(ACTIVE_PLAN_WHERE),
    )
    op.create_index(
        "ix_planner_plans_created", "planner_plans", ["environment", "service", "created_at"]
    )
    op.create_table(
        "planner_suppressions",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("breach_event_id", sa.String(36), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=True),
        sa.Column("needs_manual_action", sa.Boolean, nullable=False),
        _timestamp("created_at"),
    )
    op.create_index(
        "ix_planner_suppressions_breach_event_id", "planner_suppressions", ["breach_event_id"]
    )
    op.create_table(
        "planner_cooldowns",
        sa.Column("environment", sa.String(63), primary_key=True),
        sa.Column("service", sa.String(63), primary_key=True),
        sa.Column("trigger", sa.String(32), primary_key=True),
        _timestamp("until"),
        _timestamp("set_at"),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("plan_id", sa.String(36), nullable=True),
    )
    op.create_table(
        "planner_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("source_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        _timestamp("created_at"),
        _timestamp("published_at", nullable=True),
    )
    op.create_index("ix_planner_outbox_source_id", "planner_outbox", ["source_id"])
    op.create_index("ix_planner_outbox_published_at", "planner_outbox", ["published_at"])


def downgrade() -> None:
    op.drop_index("ix_planner_outbox_published_at", "planner_outbox")
    op.drop_index("ix_planner_outbox_source_id", "planner_outbox")
    op.drop_table("planner_outbox")
    op.drop_table("planner_cooldowns")
    op.drop_index("ix_planner_suppressions_breach_event_id", "planner_suppressions")
    op.drop_table("planner_suppressions")
    op.drop_index("ix_planner_plans_created", "planner_plans")
    op.drop_index("uq_planner_plans_active", "planner_plans")
    op.drop_table("planner_plans")
    op.drop_table("planner_bad_versions")
    op.drop_table("planner_current_versions")
    op.drop_index("ix_planner_deployments_service", "planner_deployments")
    op.drop_table("planner_deployments")
    op.drop_table("planner_inbox")
