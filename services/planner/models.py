"""The planner's tables: deployment history, current versions, plans and their guards.

Every table name starts with ``planner_``. Timestamps are stored with a time zone and always
read back as aware UTC datetimes, also on SQLite, which drops the zone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, TypeDecorator, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

ACTIVE_STATUSES = ("pending", "in_progress")
FINAL_STATUSES = ("completed", "failed", "cancelled")
# The condition of the partial unique index; the same SQL on SQLite and PostgreSQL.
ACTIVE_PLAN_WHERE = "status IN ('pending', 'in_progress')"
# The condition of the partial index over deferred breaches not yet re-checked.
DEFERRED_WHERE = "recheck_at IS NOT NULL AND rechecked_at IS NULL"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that SQLite and PostgreSQL both return in UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class InboxEntry(Base):
    """The id of an event the planner has handled, so a redelivery is recognised."""

    __tablename__ = "planner_inbox"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    handled_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Deployment(Base):
    """One deployment record of one version, in the order the planner stored it."""

    __tablename__ = "planner_deployments"
    __table_args__ = (Index("ix_planner_deployments_service", "environment", "service", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    environment: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    deployed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CurrentVersion(Base):
    """The version running now in one environment, from deployments and finished rollbacks."""

    __tablename__ = "planner_current_versions"

    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[str] = mapped_column(String(128))
    deployed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BadVersion(Base):
    """A version that a rollback replaced; no automatic rollback chooses it as a target.

    Automatic rollbacks mark their breaching version when the plan is stored, and manual
    rollbacks mark the version they replaced once they complete.
    """

    __tablename__ = "planner_bad_versions"

    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    plan_id: Mapped[str | None] = mapped_column(String(36))
    marked_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Why the version was marked, such as "manual rollback by alice".
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class Plan(Base):
    """A rollback plan. At most one per environment and service is pending or in progress."""

    __tablename__ = "planner_plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    environment: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    from_version: Mapped[str | None] = mapped_column(String(128))
    to_version: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(32))
    trigger_type: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    # The BreachDetected that caused an automatic plan, as JSON, so PlanCreated can be rebuilt.
    breach_json: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cancel_requested_by: Mapped[str | None] = mapped_column(String(200))
    failed_step: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The database, not the code, guarantees one active rollback per service: a second
        # insert of a pending or in-progress plan for the same pair fails with IntegrityError.
        Index(
            "uq_planner_plans_active",
            "environment",
            "service",
            unique=True,
            sqlite_where=text(ACTIVE_PLAN_WHERE),
            postgresql_where=text(ACTIVE_PLAN_WHERE),
        ),
        Index("ix_planner_plans_created", "environment", "service", "created_at"),
    )


class Suppression(Base):
    """A breach that did not become a plan, and why."""

    __tablename__ = "planner_suppressions"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    breach_event_id: Mapped[str] = mapped_column(String(36), index=True)
    environment: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    trigger: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    plan_id: Mapped[str | None] = mapped_column(String(36))
    needs_manual_action: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A breach deferred by a cooldown: the breach as JSON, the version it is about, when to
    # re-check it, and when and how the re-check settled it (see services/planner/deferral.py).
    breach_json: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String(128))
    recheck_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rechecked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    recheck_outcome: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index(
            "ix_planner_suppressions_deferred",
            "recheck_at",
            sqlite_where=text(DEFERRED_WHERE),
            postgresql_where=text(DEFERRED_WHERE),
        ),
    )


class Cooldown(Base):
    """Until when breaches of one trigger are suppressed for one service and environment."""

    __tablename__ = "planner_cooldowns"

    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(32), primary_key=True)
    until: Mapped[datetime] = mapped_column(UtcDateTime())
    set_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # What set it: a plan, or a suppression that needs manual action.
    cause: Mapped[str] = mapped_column(String(16))
    plan_id: Mapped[str | None] = mapped_column(String(36))


class OutboxMessage(Base):
    """An event stored in the transaction that decided it, published after the commit."""

    __tablename__ = "planner_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    # The breach or plan the event came from, so a redelivered breach finds its events.
    source_id: Mapped[str] = mapped_column(String(36), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
