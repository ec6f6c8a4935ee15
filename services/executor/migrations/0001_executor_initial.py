"""Create the executor's plans, steps and inbox of handled event ids.

Revision ID: f1c0b1de2355
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "f1c0b1de2355"
down_revision = None
branch_labels = ("executor",)
depends_on = None


def upgrade() -> None:
    # Every service has an inbox table. The executor's consumers are idempotent on stronger
    # keys (the plan row for commands, escalated_at for breaches), so this one stays empty.
    op.create_table(
        "executor_inbox",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "executor_plans",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("from_version", sa.String(128), nullable=True),
        sa.Column("to_version", sa.String(128), nullable=False),
        sa.Column("plan_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("lease", sa.Integer(), nullable=False),
        sa.Column("takeovers", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trace_context", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("traffic_paused", sa.Boolean(), nullable=False),
        sa.Column("switch_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_actor", sa.String(200), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("failed_step", sa.String(40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("outcome_published", sa.Boolean(), nullable=False),
        sa.Column("watch_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_executor_plans_status_heartbeat", "executor_plans", ["status", "heartbeat_at"]
    )
    op.create_index(
        "ix_executor_plans_watch", "executor_plans", ["environment", "service", "watch_until"]
    )
    op.create_table(
        "executor_steps",
        sa.Column(
            "plan_id",
            sa.String(36),
            sa.ForeignKey("executor_plans.plan_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("executor_steps")
    op.drop_index("ix_executor_plans_watch", table_name="executor_plans")
    op.drop_index("ix_executor_plans_status_heartbeat", table_name="executor_plans")
    op.drop_table("executor_plans")
    op.drop_table("executor_inbox")
