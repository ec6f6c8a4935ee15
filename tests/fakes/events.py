"""Rollback events as the planner and executor publish them, for notifier tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    EscalationRaised,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
    StepChanged,
)

T0 = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)


def breach(**overrides: object) -> BreachDetected:
    values: dict[str, object] = {
        "environment": "production", "service": "checkout", "version": "v1.2.0",
        "trigger": "error_rate", "measured": 0.153, "threshold": 0.1, "window_seconds": 60,
        "samples": 200, "detected_at": T0,
    }
    values.update(overrides)
    return BreachDetected.model_validate(values)


def plan(plan_id: UUID | None = None, **overrides: object) -> PlanCreated:
    values: dict[str, object] = {
        "plan_id": plan_id or uuid4(), "environment": "production", "service": "checkout",
        "from_version": "v1.2.0", "to_version": "v1.1.0", "trigger": "error_rate",
        "trigger_type": "automatic", "actor": "system", "created_at": T0 + timedelta(seconds=1),
        "breach": breach(),
    }
    values.update(overrides)
    return PlanCreated.model_validate(values)


def execute(created: PlanCreated, actor: str = "system") -> ExecutePlan:
    return ExecutePlan(plan=created, actor=actor, occurred_at=T0 + timedelta(seconds=2))


def step(created: PlanCreated, name: str, status: str, *, at: float = 3, attempt: int = 1,
         duration_ms: float | None = None, error: str | None = None) -> StepChanged:
    return StepChanged(
        plan_id=created.plan_id, environment=created.environment, service=created.service,
        step=name, status=status, attempt=attempt, occurred_at=T0 + timedelta(seconds=at),
        finished_at=T0 + timedelta(seconds=at) if status != "running" else None,
        duration_ms=duration_ms, error=error,
    )


def finished(created: PlanCreated, outcome: str = "completed", **overrides: object) -> PlanFinished:
    values: dict[str, object] = {
        "plan_id": created.plan_id, "environment": created.environment,
        "service": created.service, "from_version": created.from_version,
        "to_version": created.to_version, "trigger": created.trigger,
        "trigger_type": created.trigger_type, "outcome": outcome,
        "started_at": T0 + timedelta(seconds=2), "finished_at": T0 + timedelta(seconds=10.5),
        "duration_ms": 8500.0, "occurred_at": T0 + timedelta(seconds=10.5),
    }
    if outcome == "failed":
        values.update(failed_step="switch_version", error="release v1.1.0 not found")
    values.update(overrides)
    return PlanFinished.model_validate(values)


def suppressed(
    reason: str = "no_target", *, manual: bool = True, **overrides: object
) -> BreachSuppressed:
    values: dict[str, object] = {
        "environment": "production", "service": "checkout", "reason": reason,
        "breach": breach(), "needs_manual_action": manual,
    }
    values.update(overrides)
    return BreachSuppressed.model_validate(values)


def escalation(created: PlanCreated, **overrides: object) -> EscalationRaised:
    values: dict[str, object] = {
        "environment": created.environment, "service": created.service,
        "plan_id": created.plan_id, "reason": "watch_breach",
        "detail": "error_rate breached again during the watch period",
        "occurred_at": T0 + timedelta(seconds=70),
    }
    values.update(overrides)
    return EscalationRaised.model_validate(values)
