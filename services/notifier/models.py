"""The notifier's tables: handled events, stored plan events, the delivery log, leases, incidents.

Scheduling times (``next_attempt_at``, ``expires_at``) are Unix seconds in a float column, so
that comparisons mean the same on SQLite and PostgreSQL.
Rows older than the rollback stream's retention are pruned (see ``DeliveryStore.prune``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
SUPERSEDED = "superseded"


class InboxEntry(Base):
    """An event id the consumer has handled, so a redelivery is skipped."""

    __tablename__ = "notifier_inbox"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255))
    handled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoredEvent(Base):
    """A consumed rollback event, kept for message wording and the incident report."""

    __tablename__ = "notifier_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    plan_id: Mapped[str | None] = mapped_column(String(36), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(255))
    occurred_at: Mapped[float] = mapped_column(Float)
    payload: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """One message for one channel: the durable intent, then its delivery record.

    Unique on (channel, plan_key, notification_key): the same meaning is delivered once.
    """

    __tablename__ = "notifier_deliveries"
    __table_args__ = (
        UniqueConstraint("channel", "plan_key", "notification_key", name="uq_notifier_delivery"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(20), index=True)
    plan_key: Mapped[str] = mapped_column(String(36))
    notification_key: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))
    # Order of the message within its plan (see routing.STAGES); a plan's messages go out by it.
    stage: Mapped[int] = mapped_column(Integer, default=0)
    environment: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    source_event_id: Mapped[str] = mapped_column(String(36))
    coalesce_key: Mapped[str | None] = mapped_column(String(120))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True, default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class ChannelLease(Base):
    """The replica whose worker sends for a channel, so that sends stay ordered and limited."""

    __tablename__ = "notifier_channel_leases"

    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)


class Incident(Base):
    """The Statuspage incident opened for a plan."""

    __tablename__ = "notifier_incidents"

    plan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    # The notification kind last applied, so a repeated send after a crash changes nothing.
    last_kind: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[float] = mapped_column(Float)
