"""The camelCase JSON shapes of plans and steps served by the admin API. No I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from shared.contracts import STEP_NAMES

from services.stats.models import StatsPlan, StatsSignal, StatsStep
from pydantic.alias_generators import to_camel

from services.stats.projection import breach_of, step_duration

STEP_ORDER = {name: index for index, name in enumerate(STEP_NAMES)}


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 3)


def _camel_keys(value: dict | None) -> dict | None:
    """Return the stored breach with camelCase keys, like the rest of the plan."""
    if value is None:
        return None
    return {to_camel(key): item for key, item in value.items()}


def step_json(step: StatsStep) -> dict[str, object]:
    """Return one step as the API shows it."""
    return {
        "name": step.name,
        "status": step.status,
        "attempt": step.attempt,
        "startedAt": _time(step.started_at),
        "finishedAt": _time(step.finished_at),
        "durationMs": _number(step.duration_ms),
        "error": step.error,
    }


def signal_json(signal: StatsSignal) -> dict[str, object]:
    """Return one breach, suppression, escalation or notification failure."""
    return {
        "eventId": signal.event_id,
        "kind": signal.kind,
        "environment": signal.environment,
        "service": signal.service,
        "planId": signal.plan_id,
        "label": signal.label,
        "detail": signal.detail,
        "occurredAt": _time(signal.occurred_at),
    }


def plan_json(
    plan: StatsPlan, steps: Iterable[StatsStep], *, report_available: bool
) -> dict[str, object]:
    """Return one plan with its steps in execution order and the breach that caused it."""
    ordered = sorted(steps, key=lambda step: STEP_ORDER.get(step.name, len(STEP_ORDER)))
    return {
        "id": plan.id,
        "environment": plan.environment,
        "service": plan.service,
        "fromVersion": plan.from_version,
        "toVersion": plan.to_version,
        "status": plan.status,
        "trigger": plan.trigger,
        "triggerType": plan.trigger_type,
        "actor": plan.actor,
        "reason": plan.reason,
        "createdAt": _time(plan.created_at),
        "startedAt": _time(plan.started_at),
        "finishedAt": _time(plan.finished_at),
        "durationMs": _number(step_duration(plan.started_at, plan.finished_at, plan.duration_ms)),
        "failedStep": plan.failed_step,
        "error": plan.error,
        "breach": _camel_keys(breach_of(plan)),
        "steps": [step_json(step) for step in ordered],
        "reportAvailable": report_available,
    }
