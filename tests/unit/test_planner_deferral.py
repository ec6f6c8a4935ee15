"""The re-check of breaches deferred by a cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.planner.decision import BreachContext
from services.planner.deferral import (
    DropDeferred,
    Postpone,
    Redecide,
    WaitForPlan,
    derived_breach,
    recheck,
)
from services.planner.events import derived_id
from services.planner.targets import DeploymentRecord
from shared.contracts import BreachDetected

NOW = datetime(2026, 12, 4, 10, 5, tzinfo=UTC)
HISTORY = [
    DeploymentRecord("v1", "succeeded", NOW - timedelta(days=3), 1),
    DeploymentRecord("v2", "succeeded", NOW - timedelta(days=2), 2),
    DeploymentRecord("v3", "succeeded", NOW - timedelta(days=1), 3),
]


def context(**overrides: object) -> BreachContext:
    values: dict[str, object] = {
        "active_plan_id": None,
        "cooldown_until": NOW,
        "history": HISTORY,
        "current_version": "v3",
        "bad_versions": set(),
        "recent_automatic_plans": 0,
    }
    values.update(overrides)
    return BreachContext(**values)


def test_recheck_redecides_current_version():
    assert recheck("v3", context(), now=NOW) == Redecide()


def test_recheck_waits_for_active_plan():
    # The active plan comes first, even when the version is no longer current.
    action = recheck("v2", context(active_plan_id="p1"), now=NOW)
    assert action == WaitForPlan("p1")


def test_recheck_postponed_by_longer_cooldown():
    later = NOW + timedelta(minutes=4)
    assert recheck("v3", context(cooldown_until=later), now=NOW) == Postpone(later)


def test_recheck_drops_replaced_version():
    action = recheck("v2", context(), now=NOW)
    assert isinstance(action, DropDeferred)
    assert action.detail == "v2 is no longer current: v3 replaced it"


def test_recheck_drops_unrecorded_version():
    # A version the planner never recorded counts as current only once its record arrives.
    action = recheck("v4", context(), now=NOW)
    assert isinstance(action, DropDeferred)


def test_recheck_without_any_version():
    assert recheck(None, context(current_version=None, history=[]), now=NOW) == Redecide()
    action = recheck(None, context(), now=NOW)
    assert isinstance(action, DropDeferred)
    assert action.detail == "an unrecorded version is no longer current: v3 replaced it"


def test_derived_breach_fields():
    original = BreachDetected(
        environment="production",
        service="checkout",
        version=None,
        trigger="latency",
        measured=7000.0,
        threshold=5000.0,
        window_seconds=60,
        samples=80,
        detected_at=NOW - timedelta(minutes=2),
        detail="p95 over the threshold",
    )

    derived = derived_breach(original, "v3", NOW)

    assert derived.event_id == derived_id(original.event_id, "deferred")
    assert derived_breach(original, "v3", NOW).event_id == derived.event_id
    assert derived.detected_at == NOW
    assert derived.version == "v3"
    assert derived.trigger == "latency"
    assert derived.measured == 7000.0
    assert str(original.event_id) in derived.detail
    assert derived.detail.endswith("; p95 over the threshold")
