"""The breach decision: start a plan, suppress the breach, or ignore it as stale.

The checks run in this order, and the first that applies wins:

1. A plan of the same service and environment is pending or in progress: ``in_progress``.
2. The trigger is in its cooldown: ``cooldown``.
3. The breach is about a version older than the current one: ignored as stale.
4. The loop guard has seen its maximum of automatic rollbacks in the last hour: ``loop_guard``.
5. No earlier good version exists: ``no_target``.
6. Otherwise a plan starts from the breaching version to the target.

A plan sets the trigger's cooldown, and so do the two suppressions that need manual action
(``no_target`` and ``loop_guard``), so people get one notification per cooldown rather than
one per breach. ``in_progress`` and ``cooldown`` suppressions set no cooldown: the state that caused
them already limits how often the trigger acts, and extending a cooldown on every suppressed
breach would keep a service that breaches continuously in cooldown forever.

A cooldown delays a breach but does not cancel it. The detector reports a breach once, when its
trigger enters breach, so a ``cooldown`` suppression defers the breach to the end of the
cooldown (``recheck_at``), when :mod:`services.planner.deferral` decides it again. A breach about
a version older than the current one is not deferred, because nothing runs that version.

Cooldowns and the loop guard are judged at the planner's clock when it handles the breach,
not at the breach's ``detected_at``, so a late or redelivered breach cannot reach back into a
time before a cooldown was set. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.planner.targets import DeploymentRecord, breaching_version, select_target
from shared.contracts import BreachDetected, SuppressionReason
from shared.settings import PlannerSettings

LOOP_GUARD_WINDOW = timedelta(hours=1)
# Suppressions that set a cooldown because a person must decide what runs next.
MANUAL_ACTION_REASONS = ("no_target", "loop_guard")


@dataclass(frozen=True)
class BreachContext:
    """The stored state of one service and environment that a breach decision reads."""

    active_plan_id: str | None
    cooldown_until: datetime | None
    history: Sequence[DeploymentRecord]
    current_version: str | None
    bad_versions: Collection[str]
    # Automatic plans created within LOOP_GUARD_WINDOW before now, whatever their status.
    recent_automatic_plans: int
    # What set the trigger's cooldown: "plan" or a suppression reason.
    cooldown_cause: str | None = None


@dataclass(frozen=True)
class StartPlan:
    """Create an automatic plan from ``from_version`` to ``to_version``."""

    from_version: str
    to_version: str


@dataclass(frozen=True)
class Suppress:
    """Record and publish a suppression."""

    reason: SuppressionReason
    detail: str
    needs_manual_action: bool = False
    sets_cooldown: bool = False
    plan_id: str | None = None
    # For a breach deferred by a cooldown: when to decide it again, and the version it is about.
    recheck_at: datetime | None = None
    version: str | None = None


@dataclass(frozen=True)
class IgnoreStale:
    """Drop a breach about a version that no longer runs."""

    detail: str


Decision = StartPlan | Suppress | IgnoreStale


def cooldown_for(
    settings: PlannerSettings, environment: str, service: str, trigger: str
) -> timedelta:
    """Return the cooldown of ``trigger``, from the ``<env>/<svc>`` override when one is set."""
    override = settings.cooldown_overrides.get(f"{environment}/{service}", {})
    if trigger in override:
        return timedelta(seconds=override[trigger])
    return timedelta(seconds=settings.cooldown_seconds.get(trigger, 300.0))


def decide(
    breach: BreachDetected, context: BreachContext, *, now: datetime, loop_guard_max: int
) -> Decision:
    """Decide what to do with ``breach`` given the stored ``context`` at time ``now``."""
    if context.active_plan_id is not None:
        return Suppress(
            "in_progress",
            f"plan {context.active_plan_id} is already pending or in progress",
            plan_id=context.active_plan_id,
        )

    if context.cooldown_until is not None and now < context.cooldown_until:
        return _cooldown_suppression(breach, context, context.cooldown_until)

    current, stale = breaching_version(context.history, context.current_version, breach.version)
    if stale:
        return IgnoreStale(
            f"the breach is about {breach.version}, but {context.current_version} replaced it"
        )

    if context.recent_automatic_plans >= loop_guard_max:
        return Suppress(
            "loop_guard",
            f"{context.recent_automatic_plans} automatic rollbacks in the last hour reached the "
            f"maximum of {loop_guard_max}: a person must decide what runs next",
            needs_manual_action=True,
            sets_cooldown=True,
        )

    target = select_target(context.history, current, context.bad_versions)
    if current is None or target is None:
        return Suppress(
            "no_target",
            _no_target_detail(current),
            needs_manual_action=True,
            sets_cooldown=True,
        )
    return StartPlan(from_version=current, to_version=target)


def _cooldown_suppression(
    breach: BreachDetected, context: BreachContext, until: datetime
) -> Suppress:
    """Suppress a breach in its trigger's cooldown, deferring it unless it is stale."""
    version, stale = breaching_version(context.history, context.current_version, breach.version)
    if stale:
        return Suppress(
            "cooldown",
            f"trigger {breach.trigger} is in its cooldown until {until.isoformat()}. The breach "
            f"is about {breach.version}, which {context.current_version} replaced, so it will "
            "not be re-checked",
        )

    detail = (
        f"the breach of {describe_version(version)} is deferred because trigger "
        f"{breach.trigger} is in its cooldown, and it will be re-checked at {until.isoformat()}"
    )
    # After a no_target or loop_guard suppression the planner has already handed the service
    # to people, and the re-check will most likely end the same way.
    needs_manual_action = context.cooldown_cause in MANUAL_ACTION_REASONS
    if needs_manual_action:
        detail += (
            f". The cooldown follows a {context.cooldown_cause} suppression, so manual action "
            "is needed"
        )
    return Suppress(
        "cooldown",
        detail,
        needs_manual_action=needs_manual_action,
        recheck_at=until,
        version=version,
    )


def describe_version(version: str | None) -> str:
    """Return ``version`` for a message, or words saying that no version is known."""
    return version if version is not None else "an unrecorded version"


def _no_target_detail(current: str | None) -> str:
    if current is None:
        return "no current version is recorded and the breach names none: nothing to roll back"
    return (
        f"no version before {current} deployed successfully without being marked bad: "
        "roll back or forward by hand"
    )
