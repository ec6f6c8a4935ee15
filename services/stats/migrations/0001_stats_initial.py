"""Create the stats service's read model: inbox, plans, steps, reports, signals and counts.

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


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _count_columns() -> list[sa.Column]:
    names = (
        "total",
        "pending",
        "in_progress",
        "completed",
        "failed",
        "cancelled",
        "duration_sum_ms",
        "duration_count",
    )
    return [sa.Column(name, sa.BigInteger(), nullable=False, server_default="0") for name in names]


def upgrade() -> None:
    op.create_table(
        "stats_inbox",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        _time("handled_at", nullable=False),
    )
    op.create_table(
        "stats_plans",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("environment", sa.String(63)),
        sa.Column("service", sa.String(63)),
        sa.Column("from_version", sa.String(128)),
        sa.Column("to_version", sa.String(128)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trigger", sa.String(40)),
        sa.Column("trigger_type", sa.String(20)),
        sa.Column("actor", sa.String(200)),
        sa.Column("reason", sa.Text()),
        sa.Column("forced", sa.Boolean(), nullable=False),
        _time("created_at"),
        _time("started_at"),
        _time("finished_at"),
        sa.Column("duration_ms", sa.Float()),
        sa.Column("failed_step", sa.String(40)),
        sa.Column("error", sa.Text()),
        sa.Column("breach_json", sa.Text()),
        _time("breach_detected_at"),
        _time("first_event_at", nullable=False),
        _time("sort_at", nullable=False),
        _time("bucket_at"),
        sa.Column("counted_duration_ms", sa.BigInteger()),
        sa.Column("recovery_recorded", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_stats_plans_sort_at", "stats_plans", ["sort_at"])
    op.create_index("ix_stats_plans_bucket_at", "stats_plans", ["bucket_at"])
    op.create_index("ix_stats_plans_scope", "stats_plans", ["environment", "service", "sort_at"])
    op.create_table(
        "stats_steps",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.Column("duration_ms", sa.Float()),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "stats_reports",
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("markdown", sa.Text(), nullable=False),
        _time("stored_at", nullable=False),
    )
    op.create_table(
        "stats_signals",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("plan_id", sa.String(36)),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _time("occurred_at", nullable=False),
    )
    op.create_index("ix_stats_signals_kind_time", "stats_signals", ["kind", "occurred_at"])
    op.create_table(
        "stats_total_counts",
        sa.Column("environment", sa.String(63), primary_key=True),
        sa.Column("service", sa.String(63), primary_key=True),
        sa.Column("trigger", sa.String(40), primary_key=True),
        sa.Column("trigger_type", sa.String(20), primary_key=True),
        *_count_columns(),
    )
    op.create_table(
        "stats_daily_counts",
        sa.Column("environment", sa.String(63), primary_key=True),
        sa.Column("service", sa.String(63), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("trigger", sa.String(40), primary_key=True),
        sa.Column("trigger_type", sa.String(20), primary_key=True),
        *_count_columns(),
    )


def downgrade() -> None:
    op.drop_table("stats_daily_counts")
    op.drop_table("stats_total_counts")
    op.drop_index("ix_stats_signals_kind_time", table_name="stats_signals")
    op.drop_table("stats_signals")
    op.drop_table("stats_reports")
    op.drop_table("stats_steps")
    op.drop_index("ix_stats_plans_scope", table_name="stats_plans")
    op.drop_index("ix_stats_plans_bucket_at", table_name="stats_plans")
    op.drop_index("ix_stats_plans_sort_at", table_name="stats_plans")
    op.drop_table("stats_plans")
    op.drop_table("stats_inbox")
