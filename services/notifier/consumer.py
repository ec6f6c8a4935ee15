"""The bus consumer: record each rollback event and the deliveries it calls for.

In one transaction the consumer checks the inbox, stores the event, and adds a pending
delivery for every channel whose filter wants it (the delivery log is unique per channel, plan
and notification key). The message is acknowledged after the commit, and the workers send
later, so a channel that is down never slows the consumer. The decisions for every channel are
logged in one line per event; that line is the log channel, which receives everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from faststream.nats import NatsMessage
from prometheus_client import Counter

from services.notifier import repository, wording
from services.notifier.channels import Channel
from services.notifier.report_store import ReportChannel
from services.notifier.routing import Notification, NotifierEvent, classify, wants
from shared.contracts import BreachSuppressed, EscalationRaised, PlanFinished
from shared.db import Database
from shared.logs import bind

logger = logging.getLogger(__name__)

EVENTS = Counter(
    "travi_notifier_events_total", "Rollback events the notifier handled, by kind.", ["kind"]
)
# Characters of an event's summary in the log line; error texts can be 4000 characters long.
MAX_LOGGED_SUMMARY = 1000

DUPLICATES = Counter(
    "travi_notifier_duplicate_events_total", "Redelivered events the notifier skipped."
)


class EventConsumer:
    """Turns consumed events into stored delivery intents."""

    def __init__(
        self,
        db: Database,
        channels: Sequence[Channel],
        reports: ReportChannel | None,
        wake: Callable[[str], None],
        settle_seconds: float = 0.0,
    ) -> None:
        self._db = db
        self._settle_seconds = settle_seconds
        self._channels = list(channels)
        self._reports = reports
        self._wake = wake

    async def handle(self, event: NotifierEvent, msg: NatsMessage) -> None:
        """Handle one consumed event; idempotent on ``event_id``."""
        notification = classify(event)
        subject = msg.raw_message.subject
        with bind(
            plan_id=notification.plan_id,
            environment=notification.environment,
            service=notification.service,
            event_id=event.event_id,
        ):
            decisions = await self._record(notification, subject)
            if decisions is None:
                DUPLICATES.inc()
                logger.debug("Skipped event %s: handled before.", event.event_id)
                return
            EVENTS.labels(kind=notification.kind).inc()
            described = ", ".join(f"{name} {decision}" for name, decision in decisions.items())
            logger.info(
                "%s Notification %s: %s.",
                wording.summary(event)[:MAX_LOGGED_SUMMARY],
                notification.kind,
                described or "no channels configured",
            )
        for name, decision in decisions.items():
            if decision == "queued":
                self._wake(name)

    async def _record(self, notification: Notification, subject: str) -> dict[str, str] | None:
        """Store the event and its deliveries; return each channel's decision, or None for a
        redelivered event."""
        event_id = str(notification.event.event_id)
        async with self._db.sessions.begin() as session:
            if await repository.already_handled(session, event_id):
                return None
            repository.mark_handled(session, event_id, subject)
            repository.store_event(session, notification, subject)
            await session.flush()
            history: list[NotifierEvent] = []
            if notification.plan_id is not None:
                history = await repository.plan_events(session, str(notification.plan_id))

            decisions: dict[str, str] = {}
            for channel in self._channels:
                if not wants(channel.kinds, notification):
                    decisions[channel.name] = "not in filter"
                    continue
                payload = channel.prepare(notification, history)
                if payload is None:
                    decisions[channel.name] = "nothing to send"
                    continue
                added = await repository.enqueue(
                    session, channel.name, notification, payload,
                    coalesce=channel.coalesces, settle_seconds=self._settle_seconds,
                )
                decisions[channel.name] = "queued" if added else "already logged or outdated"
            if self._reports is not None and _changes_report(notification, history):
                payload = self._reports.prepare(notification, history)
                if payload is not None:
                    key = f"report:{notification.key}"
                    added = await repository.enqueue(
                        session, self._reports.name, notification, payload, coalesce=False, key=key
                    )
                    decisions[self._reports.name] = "queued" if added else "already queued"
            return decisions


def _changes_report(notification: Notification, history: Sequence[NotifierEvent]) -> bool:
    """Whether the plan's incident report must be written: at its outcome, and again for an
    escalation that arrives after it (a breach during the watch period)."""
    event = notification.event
    if isinstance(event, PlanFinished):
        return True
    escalated = isinstance(event, EscalationRaised) or (
        isinstance(event, BreachSuppressed) and event.needs_manual_action
    )
    if escalated and notification.plan_id is not None:
        return any(isinstance(item, PlanFinished) for item in history)
    return False
