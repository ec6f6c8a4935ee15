"""The events and commands the planner publishes, built from its stored plans.

Event ids are derived from the plan or breach they come from (UUID version 5), so anything
published twice after a crash or a redelivery carries the same ``Nats-Msg-Id``, and JetStream
and the consumers drop the repeat.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from services.planner.models import Plan
from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    CancelPlan,
    ExecutePlan,
    PlanCreated,
)


def derived_id(source: UUID | str, name: str) -> UUID:
    """Return the id of the event called ``name`` that ``source`` gives rise to."""
    return uuid5(UUID(str(source)), name)


def plan_created(plan: Plan) -> PlanCreated:
    """Build the PlanCreated event of a stored plan."""
    breach = BreachDetected.model_validate_json(plan.breach_json) if plan.breach_json else None
    return PlanCreated(
        event_id=derived_id(plan.id, "plan-created"),
        occurred_at=plan.created_at,
        plan_id=UUID(plan.id),
        environment=plan.environment,
        service=plan.service,
        from_version=plan.from_version,
        to_version=plan.to_version,
        trigger=plan.trigger,
        trigger_type=plan.trigger_type,
        actor=plan.actor,
        reason=plan.reason,
        forced=plan.forced,
        created_at=plan.created_at,
        breach=breach,
    )


def execute_plan(plan: Plan, actor: str, now: datetime) -> ExecutePlan:
    """Build the command that runs a stored plan."""
    return ExecutePlan(
        event_id=derived_id(plan.id, "execute"),
        occurred_at=now,
        plan=plan_created(plan),
        actor=actor,
    )


def cancel_plan(plan: Plan, actor: str, reason: str, now: datetime) -> CancelPlan:
    """Build the command that cancels a stored plan."""
    return CancelPlan(
        event_id=derived_id(plan.id, "cancel"),
        occurred_at=now,
        plan=plan_created(plan),
        actor=actor,
        reason=reason,
    )


def breach_suppressed(
    breach: BreachDetected,
    reason: str,
    detail: str,
    *,
    needs_manual_action: bool,
    plan_id: str | None,
    now: datetime,
) -> BreachSuppressed:
    """Build the event that reports a suppressed breach."""
    return BreachSuppressed(
        event_id=derived_id(breach.event_id, "suppressed"),
        occurred_at=now,
        environment=breach.environment,
        service=breach.service,
        reason=reason,
        breach=breach,
        detail=detail[:2000],
        plan_id=UUID(plan_id) if plan_id else None,
        needs_manual_action=needs_manual_action,
    )
