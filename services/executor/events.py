"""Build the executor's events and send them to the bus.

Every event id is derived from the plan id (see ``sequence.event_id``), so an executor that
publishes again after a takeover publishes the same ids, and JetStream or the consumers drop
the repeats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from faststream.nats import NatsBroker

from services.executor.repository import PlanState
from services.executor.sequence import event_id, step_event_name
from shared.bus import publish
from shared.contracts import (
    Contract,
    EscalationRaised,
    PlanCreated,
    PlanFinished,
    StepChanged,
    StepName,
)
from shared.names import subject


class EventSink(Protocol):
    """The destination of events: the bus in a service, a list in a test."""

    async def send(self, subject: str, event: Contract) -> None:
        """Publish ``event`` on ``subject`` and wait until it is stored."""


class BusSink:
    """Publishes to JetStream through the shared bus helpers."""

    def __init__(self, broker: NatsBroker, timeout: float) -> None:
        self.broker = broker
        self.timeout = timeout

    async def send(self, subject: str, event: Contract) -> None:
        """Publish ``event`` and wait for the stream's acknowledgement."""
        await publish(self.broker, subject, event, timeout=self.timeout)


def step_changed(
    plan: PlanCreated,
    step: StepName,
    status: str,
    attempt: int,
    *,
    started_at: datetime | None,
    finished_at: datetime | None = None,
    duration_ms: float | None = None,
    error: str | None = None,
) -> tuple[str, StepChanged]:
    """Return the subject and the StepChanged event of one step attempt's start or end."""
    event = StepChanged(
        event_id=event_id(plan.plan_id, step_event_name(step, attempt, status)),
        plan_id=plan.plan_id,
        environment=plan.environment,
        service=plan.service,
        step=step,
        status=status,  # type: ignore[arg-type]
        attempt=attempt,
        started_at=started_at,
        finished_at=finished_at,
        duration_ms=duration_ms,
        error=error[:4000] if error else None,
    )
    return subject("rollback.step", plan.environment, plan.service), event


def plan_finished(state: PlanState) -> tuple[str, PlanFinished]:
    """Return the subject and the one PlanFinished event of a plan whose outcome is stored."""
    plan = state.plan
    if state.outcome is None or state.finished_at is None:
        raise ValueError(f"plan {plan.plan_id} has no stored outcome to publish")
    duration_ms = None
    if state.started_at is not None:
        duration_ms = max((state.finished_at - state.started_at).total_seconds() * 1000, 0.0)
    actor = (
        state.cancel_actor if state.outcome == "cancelled" and state.cancel_actor else state.actor
    )
    event = PlanFinished(
        event_id=event_id(plan.plan_id, "outcome"),
        occurred_at=state.finished_at,
        plan_id=plan.plan_id,
        environment=plan.environment,
        service=plan.service,
        from_version=plan.from_version,
        to_version=plan.to_version,
        trigger=plan.trigger,
        trigger_type=plan.trigger_type,
        outcome=state.outcome,  # type: ignore[arg-type]
        started_at=state.started_at,
        finished_at=state.finished_at,
        duration_ms=duration_ms,
        failed_step=state.failed_step,  # type: ignore[arg-type]
        error=state.error[:4000] if state.error else None,
        actor=actor[:200],
    )
    return subject("rollback.outcome", plan.environment, plan.service), event


def escalation(plan: PlanCreated, reason: str, detail: str) -> tuple[str, EscalationRaised]:
    """Return the subject and the EscalationRaised event of a plan, one per reason."""
    event = EscalationRaised(
        event_id=event_id(plan.plan_id, f"escalation/{reason}"),
        environment=plan.environment,
        service=plan.service,
        plan_id=plan.plan_id,
        reason=reason,
        detail=detail[:2000],
    )
    return subject("rollback.escalation", plan.environment, plan.service), event
