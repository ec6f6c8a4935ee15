"""Bus consumers of the planner: breaches, deployment records and plan outcomes.

Each consumer is durable and shared by every planner replica, so one of them handles each
message. All three are idempotent on ``event_id`` through the planner's inbox table.
"""

from __future__ import annotations

import logging

from faststream.nats import NatsBroker, NatsMessage
from sqlalchemy.exc import DataError

from services.planner.errors import DeploymentRejected
from services.planner.planning import Planner
from shared.bus import DEPLOYMENTS_STREAM, ROLLBACK_STREAM, dead_letter, subscribe
from shared.contracts import BreachDetected, DeploymentRecorded, PlanFinished
from shared.errors import InvalidName
from shared.names import parse_subject

logger = logging.getLogger(__name__)

BREACH_CONSUMER = "planner-breaches"
DEPLOYMENT_CONSUMER = "planner-deployments"
OUTCOME_CONSUMER = "planner-outcomes"


async def _subject_matches(
    broker: NatsBroker, consumer: str, msg: NatsMessage, environment: str, service: str
) -> bool:
    """Dead-letter a message whose subject names another service or environment than its body."""
    message_subject = msg.raw_message.subject
    try:
        _, subject_environment, subject_service = parse_subject(message_subject)
    except InvalidName as exc:
        await dead_letter(broker, consumer, message_subject, msg.body, str(exc))
        return False
    if (subject_environment, subject_service) != (environment, service):
        await dead_letter(
            broker,
            consumer,
            message_subject,
            msg.body,
            f"subject {message_subject} does not match the body's environment {environment!r} "
            f"and service {service!r}: publish on <kind>.{environment}.{service}",
        )
        return False
    return True


def register_subscribers(broker: NatsBroker, planner: Planner) -> None:
    """Register the planner's three durable consumers on ``broker``."""

    async def on_breach(event: BreachDetected, msg: NatsMessage) -> None:
        if await _subject_matches(broker, BREACH_CONSUMER, msg, event.environment, event.service):
            await planner.handle_breach(event, msg.raw_message.subject)

    async def on_deployment(event: DeploymentRecorded, msg: NatsMessage) -> None:
        if await _subject_matches(
            broker, DEPLOYMENT_CONSUMER, msg, event.environment, event.service
        ):
            try:
                await planner.record_deployment(event, msg.raw_message.subject)
            except DeploymentRejected as exc:
                await dead_letter(
                    broker, DEPLOYMENT_CONSUMER, msg.raw_message.subject, msg.body, str(exc)
                )
            except DataError as exc:
                # A value the database cannot store, such as NUL in PostgreSQL text, fails the
                # same way on every delivery, so it goes to the dead-letter subject at once.
                await dead_letter(
                    broker,
                    DEPLOYMENT_CONSUMER,
                    msg.raw_message.subject,
                    msg.body,
                    f"the database rejected a value of this record ({exc.orig}): fix the record",
                )

    async def on_outcome(event: PlanFinished, msg: NatsMessage) -> None:
        if await _subject_matches(broker, OUTCOME_CONSUMER, msg, event.environment, event.service):
            await planner.apply_outcome(event, msg.raw_message.subject)

    subscribe(
        broker,
        subjects=["rollback.breach.>"],
        stream=ROLLBACK_STREAM,
        durable=BREACH_CONSUMER,
        model=BreachDetected,
        handler=on_breach,
        description="Breaches become rollback plans or suppressions.",
    )
    subscribe(
        broker,
        subjects=["deployments.>"],
        stream=DEPLOYMENTS_STREAM,
        durable=DEPLOYMENT_CONSUMER,
        model=DeploymentRecorded,
        handler=on_deployment,
        description="Deployment records build the history that rollback targets come from.",
    )
    subscribe(
        broker,
        subjects=["rollback.outcome.>"],
        stream=ROLLBACK_STREAM,
        durable=OUTCOME_CONSUMER,
        model=PlanFinished,
        handler=on_outcome,
        description="Plan outcomes finish plans and free the one-rollback-at-a-time slot.",
    )
