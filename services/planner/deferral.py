"""The re-check of a breach that a cooldown deferred: decide it again, wait, or drop it.

A ``cooldown`` suppression stores its breach with the version the breach is about and the end of
the cooldown. From then on, the planner's background loop re-checks the breach:

1. A plan of the same service and environment is pending or in progress: wait for it to finish.
2. The trigger's cooldown now ends later than before: postpone the re-check to its new end.
3. The version is no longer the current one: drop the breach, because that version no longer
   runs.
4. Otherwise decide the breach again, once, as a new breach derived from the original one.

This module does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.planner.decision import BreachContext, describe_version
from services.planner.events import derived_id
from shared.contracts import BreachDetected


@dataclass(frozen=True)
class WaitForPlan:
    """Leave the breach deferred until the active plan has finished."""

    plan_id: str


@dataclass(frozen=True)
class Postpone:
    """Move the re-check to the new end of the trigger's cooldown."""

    until: datetime


@dataclass(frozen=True)
class DropDeferred:
    """Settle the breach without deciding it, because its version no longer runs."""

    detail: str


@dataclass(frozen=True)
class Redecide:
    """Decide the breach again, as a breach detected now."""


Recheck = WaitForPlan | Postpone | DropDeferred | Redecide


def recheck(version: str | None, context: BreachContext, *, now: datetime) -> Recheck:
    """Return what to do with a deferred breach about ``version`` at time ``now``."""
    if context.active_plan_id is not None:
        return WaitForPlan(context.active_plan_id)

    if context.cooldown_until is not None and now < context.cooldown_until:
        return Postpone(context.cooldown_until)

    # A breach about a version that the planner had not yet recorded as deployed counts as
    # current only once its deployment record has arrived.
    if version != context.current_version:
        return DropDeferred(
            f"{describe_version(version)} is no longer current: "
            f"{describe_version(context.current_version)} replaced it"
        )
    return Redecide()


def derived_breach(original: BreachDetected, version: str | None, now: datetime) -> BreachDetected:
    """Build the breach that re-decides ``original``; its id derives from the original's."""
    note = (
        f"deferred by a cooldown: breach {original.event_id} first detected at "
        f"{original.detected_at.isoformat()}"
    )
    detail = f"{note}; {original.detail}" if original.detail else note
    return BreachDetected.model_validate(
        {
            **original.model_dump(),
            "event_id": derived_id(original.event_id, "deferred"),
            "occurred_at": now,
            "detected_at": now,
            "version": version if version is not None else original.version,
            "detail": detail[:2000],
        }
    )
