"""Plain-text wording of rollback events, shared by every channel and the incident report.

Functions here return unescaped text; each channel escapes it for its own format.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    EscalationRaised,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
    StepChanged,
)

SUPPRESSION_REASONS = {
    "cooldown": "the service is in its cooldown after an earlier rollback",
    "in_progress": "a rollback of this service is already in progress",
    "no_target": "there is no known-good version to roll back to",
    "loop_guard": "the loop guard stopped it: too many automatic rollbacks in the last hour",
}

STEP_MARKS = {
    "pending": "·",
    "running": "▶",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "–",
}


def format_duration(milliseconds: float | None) -> str:
    """Return a duration such as ``850 ms``, ``8.5 s``, ``2 min 10 s`` or ``1 h 5 min``."""
    if milliseconds is None:
        return "unknown"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _value(trigger: str, value: float) -> str:
    if trigger == "error_rate":
        return f"{value * 100:.1f} %"
    if trigger in {"latency", "timeout"}:
        return f"{value:.0f} ms"
    if trigger == "health_check":
        return f"{value:.0f} failed checks"
    if trigger == "budget_exceeded":
        return f"{value:.2f} of budget"
    return f"{value:g}"


def describe_breach(breach: BreachDetected) -> str:
    """Return e.g. ``error_rate 15.0 % against threshold 10.0 % over 60 s (200 samples)``."""
    text = (
        f"{breach.trigger} {_value(breach.trigger, breach.measured)} against threshold "
        f"{_value(breach.trigger, breach.threshold)}"
    )
    if breach.window_seconds:
        text += f" over {breach.window_seconds:g} s"
    if breach.samples:
        text += f" ({breach.samples} samples)"
    if breach.version:
        text += f" on {breach.version}"
    return text


def describe_trigger(plan: PlanCreated) -> str:
    """Return the plan's trigger with its measured value when a breach caused it."""
    if plan.breach is not None:
        return describe_breach(plan.breach)
    if plan.trigger == "manual":
        reason = f": {plan.reason}" if plan.reason else ""
        return f"manual, requested by {plan.actor}{reason}"
    return plan.trigger


def versions(from_version: str | None, to_version: str) -> str:
    """Return ``v1.2.0 → v1.1.0``, with ``unknown`` for a missing current version."""
    return f"{from_version or 'unknown'} → {to_version}"


def summary(event: object) -> str:
    """Return a one-line plain-text summary of a consumed event."""
    match event:
        case ExecutePlan(plan=plan):
            return (
                f"Rollback started: {plan.service} in {plan.environment}, "
                f"{versions(plan.from_version, plan.to_version)}, trigger {describe_trigger(plan)} "
                f"(plan {plan.plan_id})."
            )
        case PlanCreated():
            return (
                f"Rollback plan created ({event.trigger_type}): {event.service} in "
                f"{event.environment}, {versions(event.from_version, event.to_version)} "
                f"(plan {event.plan_id})."
            )
        case StepChanged():
            text = f"Step {event.step} {event.status} (attempt {event.attempt})"
            if event.duration_ms is not None:
                text += f" in {format_duration(event.duration_ms)}"
            if event.error:
                text += f": {event.error}"
            return f"{text} (plan {event.plan_id})."
        case PlanFinished():
            return _finished_summary(event)
        case BreachSuppressed():
            return (
                f"Breach of {event.service} in {event.environment} not acted on: "
                f"{SUPPRESSION_REASONS.get(event.reason, event.reason)}. "
                f"{describe_breach(event.breach)}."
                + (" Manual action needed." if event.needs_manual_action else "")
            )
        case EscalationRaised():
            detail = f": {event.detail}" if event.detail else ""
            return (
                f"Escalation for {event.service} in {event.environment}: {event.reason}{detail}."
                " Manual action needed."
            )
    return f"{type(event).__name__}."


def _finished_summary(event: PlanFinished) -> str:
    head = (
        f"Rollback {event.outcome}: {event.service} in {event.environment}, "
        f"{versions(event.from_version, event.to_version)}"
    )
    if event.outcome == "completed":
        return f"{head}, in {format_duration(event.duration_ms)} (plan {event.plan_id})."
    detail = ""
    if event.failed_step:
        detail += f", failed step {event.failed_step}"
    if event.error:
        detail += f": {event.error}"
    tail = " Manual action needed." if event.outcome == "failed" else ""
    return f"{head}{detail} (plan {event.plan_id}).{tail}"


def latest_steps(events: Iterable[StepChanged]) -> list[StepChanged]:
    """Return the newest state of each step, in the order the steps first appeared."""
    latest: dict[str, StepChanged] = {}
    for event in events:
        current = latest.get(event.step)
        if current is None or (event.attempt, event.occurred_at) >= (
            current.attempt,
            current.occurred_at,
        ):
            latest[event.step] = event
    return list(latest.values())


def step_line(step: StepChanged) -> str:
    """Return e.g. ``✓ drain_connections succeeded in 1.0 s``."""
    text = f"{STEP_MARKS.get(step.status, '?')} {step.step} {step.status}"
    if step.attempt > 1:
        text += f" (attempt {step.attempt})"
    if step.duration_ms is not None:
        text += f" in {format_duration(step.duration_ms)}"
    if step.error:
        text += f": {step.error}"
    return text
