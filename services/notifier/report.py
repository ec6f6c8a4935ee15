"""The incident report of a finished rollback plan, rendered as Markdown from its events.

The report follows the usual post-incident layout. It starts with the date, duration, severity
and summary, then a timeline of detection, start, completion and restoration. Root cause and
impact are left for people to fill in, and the resolution and action items close it.

Severity is derived, and people may change it when they review the report:

- SEV1: the rollback failed, or someone was asked to act (an escalation); the service may
  still be degraded.
- SEV2: an automatic rollback completed; users saw the breach until the old version was back.
- SEV3: a manual rollback completed, or a rollback was cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from services.notifier import wording
from services.notifier.routing import NotifierEvent
from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    EscalationRaised,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
    StepChanged,
)

MAX_TIMELINE_ROWS = 300
MAX_CELL_LENGTH = 500
TO_FILL_IN = "_To be filled in by the people who handled the incident._"


@dataclass(frozen=True)
class TimelineEntry:
    """One row of the report's timeline."""

    at: datetime
    description: str


def _literal(text: str) -> str:
    """Escape ``text`` so that a CommonMark viewer shows it as text instead of reading HTML."""
    return text.replace("\\", "\\\\").replace("<", "\\<")


def _cell(text: str) -> str:
    """Make ``text`` safe inside a Markdown table cell."""
    text = _literal(" ".join(text.split())).replace("|", "\\|")
    if len(text) > MAX_CELL_LENGTH:
        text = text[: MAX_CELL_LENGTH - 1] + "…"
    return text


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def severity(finished: PlanFinished, escalated: bool) -> str:
    """Return SEV1, SEV2 or SEV3 by the rule in the module documentation."""
    if finished.outcome == "failed" or escalated:
        return "SEV1"
    if finished.outcome == "completed" and finished.trigger_type == "automatic":
        return "SEV2"
    return "SEV3"


def _plan_of(events: Sequence[NotifierEvent]) -> PlanCreated | None:
    for event in events:
        if isinstance(event, ExecutePlan):
            return event.plan
    return next((event for event in events if isinstance(event, PlanCreated)), None)


def _restored_at(finished: PlanFinished, steps: Sequence[StepChanged]) -> datetime | None:
    """Return when traffic flowed again on the old version: the end of ``resume_traffic``."""
    if finished.outcome != "completed":
        return None
    for step in reversed(steps):
        if step.step == "resume_traffic" and step.status == "succeeded":
            return step.finished_at or step.occurred_at
    return finished.finished_at


def timeline(
    events: Sequence[NotifierEvent], finished: PlanFinished, breach: BreachDetected | None
) -> list[TimelineEntry]:
    """Return the report's timeline, oldest first."""
    entries: list[TimelineEntry] = []
    if breach is not None:
        detected = f"Detected: {wording.describe_breach(breach)}"
        entries.append(TimelineEntry(breach.detected_at, detected))
    steps = [event for event in events if isinstance(event, StepChanged)]
    for event in events:
        match event:
            case PlanCreated():
                entries.append(TimelineEntry(
                    event.created_at,
                    f"Rollback plan created ({event.trigger_type}, by {event.actor}): "
                    f"{wording.versions(event.from_version, event.to_version)}",
                ))
            case ExecutePlan():
                started = f"Rollback started by {event.actor}"
                entries.append(TimelineEntry(event.occurred_at, started))
            case StepChanged() if event.status in {"succeeded", "failed", "skipped"}:
                entries.append(
                    TimelineEntry(event.finished_at or event.occurred_at, wording.step_line(event))
                )
            case EscalationRaised() | BreachSuppressed():
                entries.append(TimelineEntry(event.occurred_at, wording.summary(event)))
    duration = wording.format_duration(finished.duration_ms)
    entries.append(
        TimelineEntry(finished.finished_at, f"Rollback {finished.outcome} ({duration})")
    )
    restored = _restored_at(finished, steps)
    if restored is not None:
        entries.append(TimelineEntry(restored, f"Service restored on {finished.to_version}"))
    entries.sort(key=lambda entry: entry.at)
    return entries[:MAX_TIMELINE_ROWS]


def render(plan_id: UUID, events: Sequence[NotifierEvent]) -> str | None:
    """Return the report as Markdown, or None while the plan has no outcome."""
    finished = next((event for event in reversed(events) if isinstance(event, PlanFinished)), None)
    if finished is None:
        return None
    plan = _plan_of(events)
    breach = plan.breach if plan is not None else None
    escalations = [
        event for event in events
        if isinstance(event, EscalationRaised)
        or (isinstance(event, BreachSuppressed) and event.needs_manual_action)
    ]
    entries = timeline(events, finished, breach)
    restored = _restored_at(finished, [e for e in events if isinstance(e, StepChanged)])
    first = finished.started_at or finished.finished_at
    if breach is not None:
        first = breach.detected_at

    lines = [
        f"# Incident report: {finished.service} in {finished.environment}",
        "",
        f"- **Date:** {first.strftime('%Y-%m-%d')}",
        f"- **Duration:** rollback {wording.format_duration(finished.duration_ms)}",
    ]
    if restored is not None:
        recovery_ms = (restored - first).total_seconds() * 1000
        # A manual plan has no detection, so its recovery is counted from the rollback's start.
        span = "detection to restoration" if breach is not None else "start to restoration"
        lines[-1] += f", {span} {wording.format_duration(max(recovery_ms, 0))}"
    lines += [
        f"- **Severity:** {severity(finished, bool(escalations))}",
        f"- **Status:** rollback {finished.outcome}",
        f"- **Plan:** {plan_id}",
        f"- **Versions:** {wording.versions(finished.from_version, finished.to_version)}",
        f"- **Trigger:** {_trigger(finished, plan)}",
        "",
        "## Summary",
        "",
        _summary(finished, breach),
        "",
        "## Timeline",
        "",
        "| Time | Event |",
        "| --- | --- |",
        *(f"| {_time(entry.at)} | {_cell(entry.description)} |" for entry in entries),
        "",
        "## Root cause",
        "",
        TO_FILL_IN,
        "",
        "## Impact",
        "",
        TO_FILL_IN,
        "",
        "## Resolution",
        "",
        _resolution(finished, escalations),
        "",
        "## Action items",
        "",
        *_action_items(finished, escalations),
        "",
    ]
    return "\n".join(lines)


def _trigger(finished: PlanFinished, plan: PlanCreated | None) -> str:
    if plan is None:
        return f"{finished.trigger} ({finished.trigger_type})"
    text = _cell(wording.describe_trigger(plan))
    return text if plan.trigger == "manual" else f"{text} ({plan.trigger_type})"


def _summary(finished: PlanFinished, breach: BreachDetected | None) -> str:
    if breach is not None:
        cause = f"The {breach.trigger} trigger fired ({wording.describe_breach(breach)})"
    elif finished.trigger == "manual":
        cause = "A manual rollback was requested"
    else:
        cause = f"An automatic rollback was started by the {finished.trigger} trigger"
    outcome = {
        "completed": f"{finished.service} was rolled back to {finished.to_version}.",
        "failed": f"the rollback to {finished.to_version} failed"
        + (f" at step {finished.failed_step}" if finished.failed_step else "")
        + ", and people had to act.",
        "cancelled": f"the rollback to {finished.to_version} was cancelled by "
        f"{_literal(finished.actor)}.",
    }[finished.outcome]
    return (
        f"{cause} on {finished.service} in {finished.environment}, running "
        f"{finished.from_version or 'an unknown version'}; {outcome}"
    )


def _resolution(finished: PlanFinished, escalations: Sequence[NotifierEvent]) -> str:
    if finished.outcome == "completed":
        text = (
            f"The rollback put {finished.to_version} back in place in "
            f"{wording.format_duration(finished.duration_ms)} and its health check passed."
        )
    elif finished.outcome == "failed":
        text = (
            f"The rollback failed at step {finished.failed_step or 'unknown'}"
            + (f": {_cell(finished.error)}" if finished.error else "")
            + ". Describe how the service was restored."
        )
    else:
        text = (
            f"The rollback was cancelled by {_literal(finished.actor)}. "
            "Describe how the incident ended."
        )
    if escalations:
        text += f" {len(escalations)} escalation(s) asked people to act; see the timeline."
    return text


def _action_items(finished: PlanFinished, escalations: Sequence[NotifierEvent]) -> list[str]:
    items = [
        f"- [ ] Find and fix the root cause in {finished.from_version or 'the failing version'} "
        "before deploying it again.",
        "- [ ] Check why the problem was not caught before release.",
    ]
    if finished.outcome != "completed":
        items.append(f"- [ ] Confirm that {finished.service} runs a healthy version.")
    if escalations:
        items.append("- [ ] Review the escalations and whether the rollback policy fits.")
    return items
