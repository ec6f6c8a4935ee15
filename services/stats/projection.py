"""The rules by which each rollback event changes a plan of the read model, without I/O.

Events of one plan travel on different subjects, so they can arrive in any order: a step
before its plan, an outcome before the execute command. The rules below give the same plan
whatever the order:

- The status only moves forward: pending, then in progress, then one final status
  (completed, failed or cancelled). The first final status stays; an older event never
  regresses it.
- ``PlanCreated``, also carried inside ``ExecutePlan`` and ``CancelPlan``, is the source of the
  plan's identity fields. Other events only fill the fields that are still unknown.
- A step keeps the state of its highest (attempt, status) pair; a running step is below a
  finished one of the same attempt.
- ``first_event_at`` is the earliest ``occurred_at`` seen, so it does not depend on order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime

from shared.contracts import (
    CancelPlan,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
    StepChanged,
)

from services.stats.models import StatsPlan, StatsStep

logger = logging.getLogger(__name__)

FINAL_STATUSES = ("completed", "failed", "cancelled")
# The environment or service of count rows that sum over every environment or service. It
# cannot clash with a real name, which is restricted to [a-z0-9-].
ALL = "*"
STATUS_RANK = {"pending": 0, "in_progress": 1, "completed": 2, "failed": 2, "cancelled": 2}
STEP_STATUS_RANK = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2, "skipped": 2}


def new_plan(plan_id: str, occurred_at: datetime) -> StatsPlan:
    """Return an empty pending plan first seen in an event that occurred at ``occurred_at``."""
    return StatsPlan(
        id=plan_id,
        status="pending",
        forced=False,
        first_event_at=occurred_at,
        sort_at=occurred_at,
        recovery_recorded=False,
    )


def advance_status(current: str, new: str) -> str:
    """Return the status after ``new`` is seen: a later stage wins, a final status stays."""
    if STATUS_RANK[new] > STATUS_RANK[current]:
        return new
    return current


def note_event(plan: StatsPlan, occurred_at: datetime, environment: str, service: str) -> None:
    """Record that an event of ``plan`` occurred, filling the scope if it is unknown."""
    if occurred_at < plan.first_event_at:
        plan.first_event_at = occurred_at
    plan.environment = plan.environment or environment
    plan.service = plan.service or service
    plan.sort_at = plan.created_at or plan.first_event_at


def apply_created(plan: StatsPlan, created: PlanCreated) -> None:
    """Copy the plan's identity from ``PlanCreated``, the source of these fields."""
    plan.environment = created.environment
    plan.service = created.service
    plan.from_version = created.from_version
    plan.to_version = created.to_version
    plan.trigger = created.trigger
    plan.trigger_type = created.trigger_type
    plan.actor = created.actor
    plan.reason = created.reason
    plan.forced = created.forced
    plan.created_at = created.created_at
    if created.breach is not None:
        plan.breach_json = created.breach.model_dump_json()
        plan.breach_detected_at = created.breach.detected_at
    plan.sort_at = created.created_at


def apply_command(plan: StatsPlan, command: ExecutePlan | CancelPlan) -> None:
    """Apply an execute or cancel command, which carries the plan it is about.

    An execute command marks the plan in progress. A cancel command does not change the
    status, because a plan is cancelled only when its outcome is ``cancelled``.
    """
    apply_created(plan, command.plan)
    if isinstance(command, ExecutePlan):
        plan.status = advance_status(plan.status, "in_progress")


def apply_step(plan: StatsPlan, step: StatsStep | None, event: StepChanged) -> StatsStep:
    """Merge a step event into ``step`` (new when None) and mark the plan in progress."""
    plan.status = advance_status(plan.status, "in_progress")
    if event.started_at is not None and (plan.started_at is None or event.started_at < plan.started_at):
        # The outcome's start time replaces this estimate when the outcome arrives.
        if plan.status == "in_progress":
            plan.started_at = event.started_at
    if step is None:
        step = StatsStep(plan_id=plan.id, name=event.step, status=event.status, attempt=event.attempt)
        _overwrite_step(step, event, same_attempt=False)
        return step
    stored_key = (step.attempt, STEP_STATUS_RANK[step.status])
    new_key = (event.attempt, STEP_STATUS_RANK[event.status])
    same_attempt = step.attempt == event.attempt
    if new_key >= stored_key:
        _overwrite_step(step, event, same_attempt=same_attempt)
    elif same_attempt:
        step.started_at = step.started_at or event.started_at
        step.duration_ms = step_duration(step.started_at, step.finished_at, step.duration_ms)
    return step


def _overwrite_step(step: StatsStep, event: StepChanged, *, same_attempt: bool) -> None:
    step.status = event.status
    step.attempt = event.attempt
    step.error = event.error
    if same_attempt:
        step.started_at = event.started_at or step.started_at
        step.finished_at = event.finished_at or step.finished_at
    else:
        step.started_at = event.started_at
        step.finished_at = event.finished_at
    explicit = event.duration_ms
    if explicit is None and same_attempt:
        explicit = step.duration_ms
    step.duration_ms = step_duration(step.started_at, step.finished_at, explicit)


def step_duration(
    started_at: datetime | None, finished_at: datetime | None, duration_ms: float | None
) -> float | None:
    """Return a step's duration in ms: the reported one, else the span between its times."""
    if duration_ms is not None:
        return duration_ms
    if started_at is None or finished_at is None or finished_at < started_at:
        return None
    return (finished_at - started_at).total_seconds() * 1000.0


def apply_finished(plan: StatsPlan, finished: PlanFinished) -> bool:
    """Apply the plan's outcome; return whether it became the plan's final status.

    The identity fields it carries only fill gaps. A second, different outcome for a plan
    that is already final is ignored and logged.
    """
    plan.from_version = plan.from_version or finished.from_version
    plan.to_version = plan.to_version or finished.to_version
    plan.trigger = plan.trigger or finished.trigger
    plan.trigger_type = plan.trigger_type or finished.trigger_type
    plan.actor = plan.actor or finished.actor
    if plan.status in FINAL_STATUSES:
        if plan.status != finished.outcome:
            logger.warning(
                "Ignored outcome %s of plan %s: it already ended %s.",
                finished.outcome,
                plan.id,
                plan.status,
            )
        return False
    plan.status = finished.outcome
    plan.started_at = finished.started_at
    plan.finished_at = finished.finished_at
    plan.duration_ms = finished.duration_ms
    plan.failed_step = finished.failed_step
    plan.error = finished.error
    return True


def breach_of(plan: StatsPlan) -> dict | None:
    """Return the breach that caused the plan, as stored, or None for a manual plan."""
    return json.loads(plan.breach_json) if plan.breach_json else None


@dataclass(frozen=True)
class Contribution:
    """One plan's share of the count tables."""

    bucket_at: datetime
    environment: str
    service: str
    trigger: str
    trigger_type: str
    status: str
    duration_ms: int | None

    @property
    def day(self) -> date:
        """The UTC day the plan is counted under."""
        return self.bucket_at.date()

    def counts(self, sign: int = 1) -> dict[str, int]:
        """Return the count columns this contribution adds, times ``sign``."""
        values = {"total": sign, self.status: sign}
        if self.duration_ms is not None:
            values["duration_sum_ms"] = sign * self.duration_ms
            values["duration_count"] = sign
        return values


DailyKey = tuple[date, str, str, str, str]
TotalKey = tuple[str, str, str, str]


def count_changes(
    before: Contribution | None, after: Contribution | None
) -> tuple[dict[DailyKey, dict[str, int]], dict[TotalKey, dict[str, int]]]:
    """Return the count changes when a plan's contribution goes from ``before`` to ``after``.

    Each contribution is counted at four levels: its environment and service, its environment
    over all services, its service over all environments, and everything. So a query of any
    of these scopes reads only the rows of its own level. Keys are (day, environment, service,
    trigger, trigger_type) for the daily counts and the same without the day for the totals.
    Changes that cancel out are left out.
    """
    daily: dict[DailyKey, dict[str, int]] = {}
    totals: dict[TotalKey, dict[str, int]] = {}
    for part, sign in ((before, -1), (after, 1)):
        if part is None:
            continue
        for environment, service in (
            (part.environment, part.service),
            (part.environment, ALL),
            (ALL, part.service),
            (ALL, ALL),
        ):
            total_key = (environment, service, part.trigger, part.trigger_type)
            for target in (daily.setdefault((part.day, *total_key), {}), totals.setdefault(total_key, {})):
                for name, value in part.counts(sign).items():
                    target[name] = target.get(name, 0) + value
    return _nonzero(daily), _nonzero(totals)


def _nonzero(changes: dict) -> dict:
    return {key: counts for key, counts in changes.items() if any(counts.values())}


def counted_duration_ms(plan: StatsPlan) -> int | None:
    """Return the whole-ms duration a finished plan adds to the average, or None.

    A plan counts when it is final and has both a start and an end with the end not before
    the start. The reported duration is used when present, else the span between the two.
    """
    if plan.status not in FINAL_STATUSES or plan.started_at is None or plan.finished_at is None:
        return None
    if plan.finished_at < plan.started_at:
        return None
    if plan.duration_ms is not None:
        return round(plan.duration_ms)
    return round((plan.finished_at - plan.started_at).total_seconds() * 1000.0)


def has_reversed_times(plan: StatsPlan) -> bool:
    """Return whether the plan ended before it started, which excludes it from the average."""
    return (
        plan.started_at is not None
        and plan.finished_at is not None
        and plan.finished_at < plan.started_at
    )


def contribution(plan: StatsPlan) -> Contribution | None:
    """Return what ``plan`` adds to the counts, or None while its trigger is unknown.

    The plan is counted under its creation time, or under the earliest time known until the
    creation event arrives. Moving it later is a removal and an addition.
    """
    if not (plan.environment and plan.service and plan.trigger and plan.trigger_type):
        return None
    bucket_at = plan.created_at or plan.started_at or plan.finished_at or plan.first_event_at
    return Contribution(
        bucket_at=bucket_at,
        environment=plan.environment,
        service=plan.service,
        trigger=plan.trigger,
        trigger_type=plan.trigger_type,
        status=plan.status,
        duration_ms=counted_duration_ms(plan),
    )


def recovery_seconds(plan: StatsPlan) -> float | None:
    """Return the time from the causing breach to a completed outcome, in seconds, or None."""
    if plan.status != "completed" or plan.breach_detected_at is None or plan.finished_at is None:
        return None
    seconds = (plan.finished_at - plan.breach_detected_at).total_seconds()
    return seconds if seconds >= 0 else None
