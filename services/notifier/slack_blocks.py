"""Slack messages: Block Kit blocks built with slack_sdk's models, and a plain-text fallback.

The fallback ``text`` is what notifications, screen readers and clients without Block Kit
show. All text from events is escaped and cut to Slack's limits by :mod:`.text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from services.notifier import wording
from services.notifier.routing import Notification
from services.notifier.text import (
    CONTEXT_TEXT_LIMIT,
    HEADER_TEXT_LIMIT,
    MESSAGE_TEXT_LIMIT,
    SECTION_FIELD_LIMIT,
    SECTION_TEXT_LIMIT,
    escape_and_truncate,
)
from shared.contracts import (
    BreachSuppressed,
    EscalationRaised,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
    StepChanged,
)

HEADER_EMOJI = {
    "created": ":memo:",
    "started": ":rotating_light:",
    "step": ":hourglass_flowing_sand:",
    "completed": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
    "suppressed": ":zipper_mouth_face:",
    "escalation": ":sos:",
}


def _header(kind: str, text: str) -> HeaderBlock:
    emoji = HEADER_EMOJI.get(kind, "")
    return HeaderBlock(
        text=PlainTextObject(text=escape_and_truncate(f"{emoji} {text}".strip(), HEADER_TEXT_LIMIT))
    )


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=escape_and_truncate(text, SECTION_TEXT_LIMIT)))


def _fields(pairs: Sequence[tuple[str, str]]) -> SectionBlock:
    """Return a two-column section of labelled values (Slack allows at most 10 fields)."""
    fields = []
    for label, value in pairs[:10]:
        prefix = f"*{label}*\n"
        text = prefix + escape_and_truncate(value, SECTION_FIELD_LIMIT - len(prefix))
        fields.append(MarkdownTextObject(text=text))
    return SectionBlock(fields=fields)


def _error_section(error: str) -> SectionBlock:
    """Return the error as a code block, so that ``*`` or ``_`` in it do not format text."""
    prefix, suffix = "*Error*\n```", "```"
    body = escape_and_truncate(
        error.replace("```", "` ` `"), SECTION_TEXT_LIMIT - len(prefix) - len(suffix)
    )
    return SectionBlock(text=MarkdownTextObject(text=prefix + body + suffix))


def _context(text: str) -> ContextBlock:
    return ContextBlock(
        elements=[MarkdownTextObject(text=escape_and_truncate(text, CONTEXT_TEXT_LIMIT))]
    )


def _plan_context(plan_id: object) -> ContextBlock:
    return _context(f"Plan {plan_id}")


def _started_blocks(event: ExecutePlan) -> list[Block]:
    plan = event.plan
    return [
        _header("started", f"Rollback started: {plan.service} in {plan.environment}"),
        _fields([
            ("Service", plan.service),
            ("Environment", plan.environment),
            ("From version", plan.from_version or "unknown"),
            ("To version", plan.to_version),
            ("Trigger", wording.describe_trigger(plan)),
            ("Type", f"{plan.trigger_type}, by {event.actor}"),
        ]),
        _plan_context(plan.plan_id),
    ]


def _created_blocks(event: PlanCreated) -> list[Block]:
    return [
        _header("created", f"Rollback plan created: {event.service} in {event.environment}"),
        _fields([
            ("Versions", wording.versions(event.from_version, event.to_version)),
            ("Trigger", wording.describe_trigger(event)),
            ("Type", f"{event.trigger_type}, by {event.actor}"),
        ]),
        _plan_context(event.plan_id),
    ]


def _finished_blocks(event: PlanFinished) -> list[Block]:
    title = {
        "completed": "Rollback completed",
        "failed": "Rollback failed, manual action needed",
        "cancelled": "Rollback cancelled",
    }[event.outcome]
    pairs = [
        ("Versions", wording.versions(event.from_version, event.to_version)),
        ("Duration", wording.format_duration(event.duration_ms)),
    ]
    if event.failed_step:
        pairs.append(("Failed step", event.failed_step))
    if event.outcome == "cancelled":
        pairs.append(("Cancelled by", event.actor))
    blocks: list[Block] = [
        _header(event.outcome, f"{title}: {event.service} in {event.environment}"),
        _fields(pairs),
    ]
    if event.error:
        blocks.append(_error_section(event.error))
    if event.outcome == "failed":
        blocks.append(_section(
            f"*Manual action needed.* The rollback to {event.to_version} did not finish, so "
            f"{event.service} may still run {event.from_version or 'the failing version'} or be "
            "in between. Check the service and finish or undo the rollback by hand."
        ))
    blocks.append(_plan_context(event.plan_id))
    return blocks


def _suppressed_blocks(kind: str, event: BreachSuppressed) -> list[Block]:
    title = "Manual action needed" if event.needs_manual_action else "Breach not acted on"
    blocks: list[Block] = [
        _header(kind, f"{title}: {event.service} in {event.environment}"),
        _fields([
            ("Reason", wording.SUPPRESSION_REASONS.get(event.reason, event.reason)),
            ("Breach", wording.describe_breach(event.breach)),
        ]),
    ]
    if event.detail:
        blocks.append(_section(event.detail))
    if event.plan_id is not None:
        blocks.append(_plan_context(event.plan_id))
    return blocks


def _escalation_blocks(event: EscalationRaised) -> list[Block]:
    blocks: list[Block] = [
        _header("escalation", f"Manual action needed: {event.service} in {event.environment}"),
        _fields([("Reason", event.reason)]),
    ]
    if event.detail:
        blocks.append(_section(event.detail))
    if event.plan_id is not None:
        blocks.append(_plan_context(event.plan_id))
    return blocks


def _progress_blocks(event: StepChanged, steps: Sequence[StepChanged]) -> list[Block]:
    lines = [wording.step_line(step) for step in wording.latest_steps(steps or [event])]
    return [
        _header("step", f"Rollback in progress: {event.service} in {event.environment}"),
        _section("\n".join(lines)),
        _plan_context(event.plan_id),
    ]


def build_blocks(notification: Notification, steps: Sequence[StepChanged] = ()) -> list[Block]:
    """Return the Block Kit blocks of ``notification``; ``steps`` are the plan's step events."""
    event = notification.event
    match event:
        case ExecutePlan():
            return _started_blocks(event)
        case PlanCreated():
            return _created_blocks(event)
        case StepChanged():
            return _progress_blocks(event, steps)
        case PlanFinished():
            return _finished_blocks(event)
        case BreachSuppressed():
            return _suppressed_blocks(notification.kind, event)
        case EscalationRaised():
            return _escalation_blocks(event)
    raise TypeError(f"no Slack message for {type(event).__name__}")


def build_message(
    notification: Notification, *, channel: str | None, steps: Sequence[StepChanged] = ()
) -> dict[str, Any]:
    """Return the JSON body of an incoming-webhook post: blocks, fallback text and channel.

    Slack apps bind an incoming webhook to one channel and ignore ``channel``; legacy webhooks
    honour it.
    """
    fallback = wording.summary(notification.event)
    if isinstance(notification.event, StepChanged) and steps:
        lines = [wording.step_line(step) for step in wording.latest_steps(steps)]
        fallback = f"Rollback in progress: {'; '.join(lines)} (plan {notification.plan_id})."
    body: dict[str, Any] = {
        "text": escape_and_truncate(fallback, MESSAGE_TEXT_LIMIT),
        "blocks": [block.to_dict() for block in build_blocks(notification, steps)],
    }
    if channel:
        body["channel"] = channel
    return body
