"""Classification of rollback events into notifications, and the filter of each channel.

Each consumed event becomes one :class:`Notification` with a kind (started, completed, failed,
escalation and so on) and a ``key``. The delivery log is unique on (channel, plan, key), so the
same event delivered twice, or a second event with the same meaning (two ``PlanFinished`` for
one plan), is sent once per channel. Each channel has a filter of kinds in the settings.

A rollback counts as started when ``ExecutePlan`` is published, not when the plan is created: a
manual plan may wait as pending for an operator, or be cancelled before it runs, and people
should not hear "rollback started" about it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from pydantic import Discriminator, Tag

from shared.contracts import (
    BreachSuppressed,
    Contract,
    EscalationRaised,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
    StepChanged,
)
from shared.settings import NotificationKind

NotifierEvent = (
    PlanCreated | ExecutePlan | StepChanged | PlanFinished | BreachSuppressed | EscalationRaised
)


_CONSUMED = (
    PlanCreated, ExecutePlan, StepChanged, PlanFinished, BreachSuppressed, EscalationRaised
)
_COMMON_FIELDS = frozenset(Contract.model_fields)
_FIELDS = {
    model.__name__: frozenset(model.model_fields) - _COMMON_FIELDS for model in _CONSUMED
}


def _event_tag(value: Any) -> str | None:
    """Pick the contract whose fields best match a message body.

    The closest contract validates the body, so an event with a missing or misspelt field gets
    an error about that field rather than about every contract.
    """
    if not isinstance(value, dict):
        return type(value).__name__ if isinstance(value, _CONSUMED) else None
    keys = set(value) - _COMMON_FIELDS

    def score(tag: str) -> tuple[int, int]:
        # Known fields count for, unknown ones against, and then fewer missing fields win.
        fields = _FIELDS[tag]
        return len(keys & fields) - len(keys - fields), -len(fields - keys)

    best = max(_FIELDS, key=score)
    return best if keys & _FIELDS[best] else None


# The model the notifier's consumer validates every message against.
ConsumedEvent = Annotated[
    Annotated[PlanCreated, Tag("PlanCreated")]
    | Annotated[ExecutePlan, Tag("ExecutePlan")]
    | Annotated[StepChanged, Tag("StepChanged")]
    | Annotated[PlanFinished, Tag("PlanFinished")]
    | Annotated[BreachSuppressed, Tag("BreachSuppressed")]
    | Annotated[EscalationRaised, Tag("EscalationRaised")],
    Discriminator(
        _event_tag,
        custom_error_type="unknown_event",
        custom_error_message="not a rollback event the notifier consumes: expected PlanCreated, "
        "ExecutePlan, StepChanged, PlanFinished, BreachSuppressed or EscalationRaised",
    ),
]


# Order of a plan's messages on a channel. Events of one plan may be handled out of order (by
# two replicas, or after a redelivery), so a worker sends a plan's pending messages by stage.
STAGES: dict[str, int] = {
    "created": 0,
    "started": 1,
    "step": 2,
    "suppressed": 3,
    "escalation": 3,
    "completed": 4,
    "failed": 4,
    "cancelled": 4,
}


@dataclass(frozen=True)
class Notification:
    """A rollback event as a message to people: its kind, its delivery-log key and its plan."""

    kind: NotificationKind
    key: str
    event: NotifierEvent
    plan_id: UUID | None
    environment: str
    service: str
    # Pending messages with the same coalesce key on a channel that coalesces are replaced by
    # the newest one, so a burst of progress becomes one post.
    coalesce_key: str | None = None

    @property
    def stage(self) -> int:
        """The message's place among its plan's messages."""
        return STAGES[self.kind]

    @property
    def plan_key(self) -> str:
        """The plan id as stored in the delivery log, or ``-`` for events without a plan."""
        return str(self.plan_id) if self.plan_id is not None else "-"


def classify(event: NotifierEvent) -> Notification:
    """Return what ``event`` means to people."""
    match event:
        case ExecutePlan(plan=plan):
            return Notification(
                "started", "started", event, plan.plan_id, plan.environment, plan.service
            )
        case PlanCreated():
            return Notification(
                "created", "created", event, event.plan_id, event.environment, event.service
            )
        case StepChanged():
            return Notification(
                "step",
                f"step:{event.step}:{event.status}:{event.attempt}",
                event,
                event.plan_id,
                event.environment,
                event.service,
                coalesce_key=f"progress:{event.plan_id}",
            )
        case PlanFinished():
            # One outcome per plan: a repeated or contradicting outcome is not sent again.
            return Notification(
                event.outcome, "finished", event, event.plan_id, event.environment, event.service
            )
        case BreachSuppressed():
            kind: NotificationKind = "escalation" if event.needs_manual_action else "suppressed"
            return Notification(
                kind, f"{kind}:{event.event_id}", event, event.plan_id, event.environment,
                event.service,
            )
        case EscalationRaised():
            return Notification(
                "escalation", f"escalation:{event.event_id}", event, event.plan_id,
                event.environment, event.service,
            )
    raise TypeError(f"the notifier does not consume {type(event).__name__}")


def wants(kinds: Collection[NotificationKind], notification: Notification) -> bool:
    """Return whether a channel whose filter is ``kinds`` gets ``notification``."""
    return notification.kind in kinds


def component_for(components: dict[str, str], environment: str, service: str) -> str | None:
    """Return the status-page component of a service: ``<env>/<svc>`` first, then ``<svc>``."""
    return components.get(f"{environment}/{service}") or components.get(service)
