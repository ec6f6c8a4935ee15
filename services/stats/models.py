"""Tables of the stats service's read model, all built from rollback events.

``stats_plans`` and ``stats_steps`` hold one row per plan and per step. The two count tables
hold each plan's contribution to the statistics, summed per environment, service, trigger and
trigger type: ``stats_total_counts`` over all time and ``stats_daily_counts`` per UTC day. Rows
whose environment or service is ``*`` sum over every environment or service. The projection
updates them in the same transaction as the plan row, so a stats query sums a few count rows
instead of scanning the plans.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from shared.db import Base


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    SQLite keeps no time zone, so values are stored there as naive UTC and get their zone back
    when read. Stored strings then compare in time order, which the range queries rely on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StatsInbox(Base):
    """Event ids already applied, so a redelivered event changes nothing."""

    __tablename__ = "stats_inbox"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    handled_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StatsPlan(Base):
    """One rollback plan as the events describe it so far.

    A row is created by whichever event of the plan arrives first, so every field but the id
    may still be unknown. ``bucket_at`` is the time the plan is counted under (its creation,
    or the earliest time known until the creation arrives) and is NULL while the plan is not
    counted, that is, while its trigger is unknown.
    """

    __tablename__ = "stats_plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    environment: Mapped[str | None] = mapped_column(String(63))
    service: Mapped[str | None] = mapped_column(String(63))
    from_version: Mapped[str | None] = mapped_column(String(128))
    to_version: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    trigger: Mapped[str | None] = mapped_column(String(40))
    trigger_type: Mapped[str | None] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    duration_ms: Mapped[float | None] = mapped_column(Float)
    failed_step: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    breach_json: Mapped[str | None] = mapped_column(Text)
    breach_detected_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    first_event_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sort_at: Mapped[datetime] = mapped_column(UtcDateTime())
    bucket_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The whole-ms duration the plan adds to the average, or NULL; set with ``bucket_at``.
    counted_duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    recovery_recorded: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_stats_plans_sort_at", "sort_at"),
        Index("ix_stats_plans_bucket_at", "bucket_at"),
        Index("ix_stats_plans_scope", "environment", "service", "sort_at"),
    )


class StatsStep(Base):
    """The latest known state of one step of a plan."""

    __tablename__ = "stats_steps"

    plan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    duration_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class StatsReport(Base):
    """The incident report of a plan, as markdown; a newer report replaces an older one."""

    __tablename__ = "stats_reports"

    plan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    markdown: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StatsSignal(Base):
    """A breach, suppression, escalation or notification failure, as it arrived.

    ``GET /api/admin/signals`` lists them, so an operator can see why a breach did not become
    a rollback.
    """

    __tablename__ = "stats_signals"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    environment: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    plan_id: Mapped[str | None] = mapped_column(String(36))
    label: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_stats_signals_kind_time", "kind", "occurred_at"),)


class CountColumns:
    """Summed contributions of the plans in one group."""

    total: Mapped[int] = mapped_column(BigInteger, default=0)
    pending: Mapped[int] = mapped_column(BigInteger, default=0)
    in_progress: Mapped[int] = mapped_column(BigInteger, default=0)
    completed: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    cancelled: Mapped[int] = mapped_column(BigInteger, default=0)
    # Whole milliseconds, so that adding and removing a contribution is exact.
    duration_sum_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_count: Mapped[int] = mapped_column(BigInteger, default=0)


class StatsTotalCount(CountColumns, Base):
    """Counts over all time per environment, service, trigger and trigger type."""

    __tablename__ = "stats_total_counts"

    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(40), primary_key=True)
    trigger_type: Mapped[str] = mapped_column(String(20), primary_key=True)


class StatsDailyCount(CountColumns, Base):
    """Counts per UTC day of ``bucket_at``, environment, service, trigger and trigger type."""

    __tablename__ = "stats_daily_counts"

    # The key starts with the scope, so a query reads one scope's days as one index range.
    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(40), primary_key=True)
    trigger_type: Mapped[str] = mapped_column(String(20), primary_key=True)


COUNT_FIELDS = (
    "total",
    "pending",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
    "duration_sum_ms",
    "duration_count",
)
VIEW_TABLES = (
    StatsInbox,
    StatsPlan,
    StatsStep,
    StatsReport,
    StatsSignal,
    StatsTotalCount,
    StatsDailyCount,
)
