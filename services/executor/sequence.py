"""The order of the eight steps, their policies and the decisions around them, without I/O.

The runner calls this module to learn which steps a cancel may interrupt, how long to wait before a
retry, and what to do with a switch that was running when its executor died. It also derives
each event's id, so that a repeat after a crash is dropped as a duplicate.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping

from services.executor.errors import ConfigurationError
from shared.contracts import STEP_NAMES, StepName
from shared.settings import StepPolicy

# Namespace of the deterministic event ids the executor derives from a plan id.
EVENT_NAMESPACE = uuid.UUID("6f1d2b9e-53c4-4a8e-9d0e-7c1f3a5b2e10")

# Defaults sized from the typical step durations of the rollback guide, with room for slow
# targets. settings.executor.steps overrides them step by step.
DEFAULT_POLICIES: dict[StepName, StepPolicy] = {
    "validate_target": StepPolicy(timeout_seconds=30, attempts=2, backoff_seconds=0.5),
    "pause_traffic": StepPolicy(timeout_seconds=30, attempts=3, backoff_seconds=0.5),
    "drain_connections": StepPolicy(timeout_seconds=120, attempts=1, backoff_seconds=0),
    "switch_version": StepPolicy(timeout_seconds=300, attempts=1, backoff_seconds=0),
    "verify_health": StepPolicy(timeout_seconds=120, attempts=1, backoff_seconds=0),
    "resume_traffic": StepPolicy(timeout_seconds=30, attempts=5, backoff_seconds=1.0),
    "cleanup": StepPolicy(timeout_seconds=60, attempts=2, backoff_seconds=1.0),
    "notify": StepPolicy(timeout_seconds=30, attempts=5, backoff_seconds=1.0),
}

# Steps that run whatever happened before them: resuming traffic that was paused, and handing
# the outcome to the notifier. A cancel never skips them.
ALWAYS_RUN: frozenset[StepName] = frozenset({"resume_traffic", "notify"})
FORWARD_STEPS: tuple[StepName, ...] = STEP_NAMES[:-1]
FINISHED_STATUSES = frozenset({"succeeded", "skipped"})


def resolve_policies(overrides: Mapping[str, StepPolicy]) -> dict[StepName, StepPolicy]:
    """Return the policy of every step: the defaults, replaced where ``overrides`` names a step."""
    unknown = sorted(set(overrides) - set(STEP_NAMES))
    if unknown:
        raise ConfigurationError(
            f"invalid TRAVI_EXECUTOR__STEPS: unknown step {', '.join(unknown)}; "
            f"use the step names {', '.join(STEP_NAMES)}"
        )
    return {name: overrides.get(name, DEFAULT_POLICIES[name]) for name in STEP_NAMES}


def backoff_delay(policy: StepPolicy, failed_attempt: int) -> float:
    """Return the wait, in seconds, after attempt ``failed_attempt`` failed (doubling each time)."""
    return policy.backoff_seconds * 2 ** max(failed_attempt - 1, 0)


def cancel_interrupts(step: StepName) -> bool:
    """Return whether a recorded cancel stops the plan before ``step`` starts."""
    return step not in ALWAYS_RUN


class SwitchRecovery(enum.Enum):
    """The action a takeover takes on a switch_version that was running when its executor died."""

    RUN = "run"
    MARK_SUCCEEDED = "mark_succeeded"
    FAIL = "fail"


def recover_switch(*, started: bool, idempotent: bool, switched: bool | None) -> SwitchRecovery:
    """Decide how to resume an interrupted switch so that it takes effect at most once.

    ``started`` tells whether the driver's switch was called (recorded just before the call),
    ``idempotent`` whether the driver guarantees that a second call changes nothing, and
    ``switched`` what the driver reports about the target now (``None``: it cannot tell).
    """
    if not started or idempotent:
        return SwitchRecovery.RUN
    if switched:
        return SwitchRecovery.MARK_SUCCEEDED
    return SwitchRecovery.FAIL


def event_id(plan_id: uuid.UUID | str, name: str) -> uuid.UUID:
    """Return the event id of the event ``name`` of a plan, the same on every replica."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{plan_id}/{name}")


def step_event_name(step: StepName, attempt: int, status: str) -> str:
    """Return the name from which a StepChanged event's id is derived."""
    return f"step/{step}/{attempt}/{status}"
