"""Errors of the executor: why a step failed, a cancelled plan, a lost lease."""

from __future__ import annotations

from shared.errors import ConfigurationError, TraviError

__all__ = ["ConfigurationError", "HandedBack", "LeaseLost", "PlanCancelled", "StepFailed"]


class StepFailed(TraviError):
    """A step's action failed; the message names what failed and the value involved."""


class PlanCancelled(TraviError):
    """A cancel was recorded for the plan while a step waited (the drain)."""

    def __init__(self, actor: str, reason: str) -> None:
        self.actor = actor
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"cancelled by {actor}{detail}")


class HandedBack(TraviError):
    """The executor is stopping, so it hands the plan back for a takeover at a step boundary."""


class LeaseLost(TraviError):
    """Another executor took the plan over; this one must stop acting on it at once."""

    def __init__(self, plan_id: object, lease: int) -> None:
        self.plan_id = plan_id
        self.lease = lease
        super().__init__(f"plan {plan_id} is no longer held with lease {lease}")
