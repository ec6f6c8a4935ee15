"""Bus entry points of the stats service: the rollback-event consumer and the dead-letter watch.

The durable consumer ``stats`` reads every ``rollback.>`` subject from the start of the stream
and applies each event in its own transaction, committed before the acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faststream import AckPolicy
from faststream.nats import NatsBroker, NatsMessage, PullSub
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared.bus import (
    CANCEL_SUBJECT,
    DEAD_LETTER_PREFIX,
    DEAD_LETTER_STREAM,
    EXECUTE_SUBJECT,
    ROLLBACK_STREAM,
    Retry,
    dead_letter,
    describe_validation_error,
    jstream,
    subscribe,
)
from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    CancelPlan,
    EscalationRaised,
    ExecutePlan,
    IncidentReportStored,
    NotificationFailed,
    PlanCreated,
    PlanFinished,
    StepChanged,
)
from shared.db import Database
from shared.logs import bind

from services.stats import metrics
from services.stats.store import RollbackEvent, apply_event

logger = logging.getLogger(__name__)

DURABLE = "stats"
DEAD_LETTER_DURABLE = "stats-deadletters"
# How long an event waits before it is applied, seconds. A dashboard that refreshes every 10 s
# does not show the lag. In return, stats leaves the shared event loop to the planner and the
# executor right after a breach.
SETTLE_SECONDS = 0.5

MODELS_BY_KIND: dict[str, type[BaseModel]] = {
    "rollback.breach": BreachDetected,
    "rollback.plan": PlanCreated,
    "rollback.step": StepChanged,
    "rollback.outcome": PlanFinished,
    "rollback.suppressed": BreachSuppressed,
    "rollback.escalation": EscalationRaised,
    "rollback.report": IncidentReportStored,
    "rollback.notification": NotificationFailed,
}
COMMAND_MODELS: dict[str, type[BaseModel]] = {
    EXECUTE_SUBJECT: ExecutePlan,
    CANCEL_SUBJECT: CancelPlan,
}


class InvalidEvent(ValueError):
    """A message on a rollback subject that does not match its contract."""


class UnknownSubject(LookupError):
    """A rollback subject the stats service has no contract for."""


def decode(subject: str, payload: dict[str, Any]) -> RollbackEvent:
    """Validate ``payload`` against the contract of ``subject``.

    Raises UnknownSubject for a subject without a contract, and InvalidEvent when the body
    does not match the contract or names another environment or service than the subject.
    """
    model = COMMAND_MODELS.get(subject)
    scope: tuple[str, str] | None = None
    if model is None:
        kind, _, rest = subject.rpartition(".")
        kind, _, environment = kind.rpartition(".")
        model = MODELS_BY_KIND.get(kind)
        if model is None:
            raise UnknownSubject(subject)
        scope = (environment, rest)
    try:
        event = model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from exc
    if scope is not None and scope != (event.environment, event.service):
        raise InvalidEvent(
            f"environment/service {event.environment}/{event.service} in the body does not match "
            f"the subject {subject}: publish on rollback.<kind>.<environment>.<service>"
        )
    return event


class EventApplier:
    """Applier of rollback events to the view; a rebuild takes ``lock`` to pause it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lock = asyncio.Lock()

    async def apply(self, subject: str, event: RollbackEvent) -> bool:
        """Apply and commit one event, then count it; return False for a repeat."""
        async with self.lock:
            try:
                async with self.db.sessions() as session, session.begin():
                    facts = await apply_event(session, subject, event)
            except IntegrityError as exc:
                # Another replica inserted the same plan or step row at the same moment.
                raise Retry(f"concurrent write to the stats view: {exc.orig}", delay=0.2) from exc
            except DBAPIError as exc:
                raise Retry(f"stats database unavailable: {exc.orig}", delay=1.0) from exc
        if facts is None:
            metrics.EVENTS_DUPLICATE.inc()
            return False
        metrics.EVENTS_APPLIED.labels(type(event).__name__).inc()
        metrics.record(facts)
        return True


def register_consumers(broker: NatsBroker, applier: EventApplier) -> None:
    """Register the rollback-event consumer and the dead-letter watch on ``broker``."""

    async def handle(payload: dict[str, Any], msg: NatsMessage) -> None:
        subject = msg.raw_message.subject
        try:
            event = decode(subject, payload)
        except UnknownSubject:
            logger.info("Skipped a message on %s: the stats view has no contract for it.", subject)
            return
        except InvalidEvent as exc:
            await dead_letter(broker, DURABLE, subject, msg.body, str(exc))
            return
        with bind(event_id=event.event_id, plan_id=_plan_id(event)):
            await applier.apply(subject, event)

    subscribe(
        broker,
        subjects=["rollback.>"],
        stream=ROLLBACK_STREAM,
        durable=DURABLE,
        model=dict[str, Any],
        handler=handle,
        batch_size=50,
        settle_seconds=SETTLE_SECONDS,
        description="Every rollback event, into the statistics view.",
    )

    async def count_dead_letter(msg: NatsMessage) -> None:
        subject = msg.raw_message.subject
        metrics.INVALID_EVENTS.labels(subject.removeprefix(DEAD_LETTER_PREFIX + ".")).inc()

    broker.subscriber(
        f"{DEAD_LETTER_PREFIX}.>",
        stream=jstream(DEAD_LETTER_STREAM),
        durable=DEAD_LETTER_DURABLE,
        config=ConsumerConfig(
            durable_name=DEAD_LETTER_DURABLE, deliver_policy=DeliverPolicy.NEW, max_deliver=3
        ),
        pull_sub=PullSub(50, timeout=0.5),
        ack_policy=AckPolicy.ACK,
        description="Dead letters of every consumer, counted as invalid events.",
    )(count_dead_letter)


def _plan_id(event: RollbackEvent) -> object:
    if isinstance(event, ExecutePlan | CancelPlan):
        return event.plan.plan_id
    return getattr(event, "plan_id", None)
