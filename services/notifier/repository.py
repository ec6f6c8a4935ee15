"""Database access of the notifier: inbox, stored events, delivery log, leases and incidents."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import (
    FAILED,
    PENDING,
    SENT,
    SUPERSEDED,
    ChannelLease,
    Delivery,
    InboxEntry,
    Incident,
    StoredEvent,
)
from services.notifier.retry import AttemptResult
from services.notifier.routing import ConsumedEvent, Notification, NotifierEvent
from shared.db import Database

# Kinds that are not sent once the plan's outcome went out on the channel: an event handled
# late (after a redelivery) would otherwise announce a start or a step after the finish.
OUTDATED_AFTER_FINISH = frozenset({"created", "started", "step"})

_EVENT_ADAPTER: TypeAdapter[NotifierEvent] = TypeAdapter(ConsumedEvent)


async def already_handled(session: AsyncSession, event_id: str) -> bool:
    """Return whether the consumer has handled ``event_id`` before."""
    return await session.get(InboxEntry, event_id) is not None


def mark_handled(session: AsyncSession, event_id: str, subject: str) -> None:
    """Record ``event_id`` in the inbox, in the caller's transaction."""
    session.add(InboxEntry(event_id=event_id, subject=subject, handled_at=datetime.now(UTC)))


def store_event(session: AsyncSession, notification: Notification, subject: str) -> None:
    """Keep the event for later wording and the incident report."""
    event = notification.event
    session.add(
        StoredEvent(
            event_id=str(event.event_id),
            plan_id=str(notification.plan_id) if notification.plan_id else None,
            event_type=type(event).__name__,
            subject=subject,
            occurred_at=event.occurred_at.timestamp(),
            payload=event.model_dump_json(),
        )
    )


async def plan_events(session: AsyncSession, plan_id: str) -> list[NotifierEvent]:
    """Return the stored events of a plan, oldest first; unreadable rows are left out."""
    rows = await session.scalars(
        select(StoredEvent)
        .where(StoredEvent.plan_id == plan_id)
        .order_by(StoredEvent.occurred_at, StoredEvent.id)
    )
    events: list[NotifierEvent] = []
    for row in rows:
        try:
            events.append(_EVENT_ADAPTER.validate_json(row.payload))
        except ValidationError:
            continue  # a row written by a newer contract version; the report omits it
    return events


async def enqueue(
    session: AsyncSession,
    channel: str,
    notification: Notification,
    payload: dict[str, Any],
    *,
    coalesce: bool,
    key: str | None = None,
    settle_seconds: float = 0.0,
) -> bool:
    """Add a pending delivery unless the log already has (channel, plan, key) or the message
    is outdated; return whether it was added. With ``coalesce``, older pending messages with
    the same coalesce key that were never attempted are marked superseded."""
    notification_key = key or notification.key
    existing = await session.scalar(
        select(Delivery.id).where(
            Delivery.channel == channel,
            Delivery.plan_key == notification.plan_key,
            Delivery.notification_key == notification_key,
        )
    )
    if existing is not None:
        return False

    if notification.kind in OUTDATED_AFTER_FINISH and await _finished_sent(
        session, channel, notification.plan_key
    ):
        return False

    coalesce_key = notification.coalesce_key if coalesce else None
    now = time.time()
    if coalesce_key is not None:
        await session.execute(
            update(Delivery)
            .where(
                Delivery.channel == channel,
                Delivery.coalesce_key == coalesce_key,
                Delivery.status == PENDING,
                Delivery.attempts == 0,
            )
            .values(status=SUPERSEDED, finished_at=now)
        )

    session.add(
        Delivery(
            channel=channel,
            plan_key=notification.plan_key,
            notification_key=notification_key,
            kind=notification.kind,
            stage=notification.stage,
            environment=notification.environment,
            service=notification.service,
            source_event_id=str(notification.event.event_id),
            coalesce_key=coalesce_key,
            payload=json.dumps(payload, ensure_ascii=False),
            status=PENDING,
            attempts=0,
            failures=0,
            next_attempt_at=now + settle_seconds,
            created_at=now,
        )
    )
    return True


async def _finished_sent(session: AsyncSession, channel: str, plan_key: str) -> bool:
    """Return whether the plan's outcome has already gone out (or been given up)."""
    return (
        await session.scalar(
            select(Delivery.id).where(
                Delivery.channel == channel,
                Delivery.plan_key == plan_key,
                Delivery.notification_key == "finished",
                Delivery.status != PENDING,
            )
        )
        is not None
    )


class DeliveryStore:
    """Worker-side operations, each in its own short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def acquire_lease(self, channel: str, holder: str, seconds: float) -> bool:
        """Take or renew the channel's lease; return whether ``holder`` has it."""
        now = time.time()
        async with self.db.sessions.begin() as session:
            result = await session.execute(
                update(ChannelLease)
                .where(
                    ChannelLease.channel == channel,
                    or_(ChannelLease.holder == holder, ChannelLease.expires_at < now),
                )
                .values(holder=holder, expires_at=now + seconds)
            )
            if result.rowcount == 1:
                return True
            if await session.get(ChannelLease, channel) is not None:
                return False
        try:
            async with self.db.sessions.begin() as session:
                session.add(ChannelLease(channel=channel, holder=holder, expires_at=now + seconds))
        except IntegrityError:
            return False  # another replica created it first
        return True

    async def release_lease(self, channel: str, holder: str) -> None:
        """Let another replica take the channel at once."""
        async with self.db.sessions.begin() as session:
            await session.execute(
                update(ChannelLease)
                .where(ChannelLease.channel == channel, ChannelLease.holder == holder)
                .values(expires_at=0.0)
            )

    async def head(self, channel: str) -> Delivery | None:
        """Return the delivery to send next: the oldest pending one, or an earlier stage of
        the same plan that was handled later (a start queued after its plan's outcome)."""
        async with self.db.sessions() as session:
            oldest = await session.scalar(
                select(Delivery)
                .where(Delivery.channel == channel, Delivery.status == PENDING)
                .order_by(Delivery.id)
                .limit(1)
            )
            if oldest is None or oldest.plan_key == "-":
                return oldest
            return await session.scalar(
                select(Delivery)
                .where(
                    Delivery.channel == channel,
                    Delivery.status == PENDING,
                    Delivery.plan_key == oldest.plan_key,
                )
                .order_by(Delivery.stage, Delivery.id)
                .limit(1)
            )

    async def mark_sent(self, delivery_id: int, result: AttemptResult) -> None:
        """Record a delivered message."""
        await self._finish(delivery_id, SENT, result)

    async def mark_failed(self, delivery_id: int, result: AttemptResult, reason: str) -> None:
        """Record a message that was given up."""
        await self._finish(delivery_id, FAILED, result, error=reason)

    async def _finish(
        self, delivery_id: int, status: str, result: AttemptResult, error: str | None = None
    ) -> None:
        async with self.db.sessions.begin() as session:
            delivery = await session.get(Delivery, delivery_id)
            if delivery is None:
                return
            delivery.status = status
            delivery.attempts += 1
            delivery.finished_at = time.time()
            delivery.last_status_code = result.status_code
            delivery.last_error = error

    async def schedule_retry(
        self, delivery_id: int, result: AttemptResult, *, delay: float, counts: bool
    ) -> None:
        """Record a failed attempt and when to try again."""
        async with self.db.sessions.begin() as session:
            delivery = await session.get(Delivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            if counts:
                delivery.failures += 1
            delivery.next_attempt_at = time.time() + delay
            delivery.last_status_code = result.status_code
            delivery.last_error = result.describe()

    async def incident(self, plan_id: str) -> Incident | None:
        """Return the Statuspage incident of a plan, if one was opened."""
        async with self.db.sessions() as session:
            return await session.get(Incident, plan_id)

    async def save_incident(self, plan_id: str, incident_id: str, status: str, kind: str) -> None:
        """Store or update the Statuspage incident of a plan."""
        async with self.db.sessions.begin() as session:
            row = await session.get(Incident, plan_id)
            if row is None:
                session.add(
                    Incident(
                        plan_id=plan_id, incident_id=incident_id, status=status, last_kind=kind,
                        updated_at=time.time(),
                    )
                )
            else:
                row.status = status
                row.last_kind = kind
                row.updated_at = time.time()

    async def prune(self, before: float) -> int:
        """Delete handled events, stored events, finished deliveries and incidents older than
        ``before`` (Unix seconds); pending deliveries are kept. Return the rows deleted."""
        async with self.db.sessions.begin() as session:
            statements = [
                delete(InboxEntry).where(
                    InboxEntry.handled_at < datetime.fromtimestamp(before, UTC)
                ),
                delete(StoredEvent).where(StoredEvent.occurred_at < before),
                delete(Delivery).where(
                    Delivery.status != PENDING, Delivery.created_at < before
                ),
                delete(Incident).where(Incident.updated_at < before),
            ]
            deleted = 0
            for statement in statements:
                result = await session.execute(statement)
                deleted += max(result.rowcount or 0, 0)
            return deleted

    async def plan_events(self, plan_id: str) -> list[NotifierEvent]:
        """Return the stored events of a plan, oldest first."""
        async with self.db.sessions() as session:
            return await plan_events(session, plan_id)
