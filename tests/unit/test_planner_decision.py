"""The breach decision: order of the checks, cooldowns and the loop guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.planner.decision import (
    BreachContext,
    IgnoreStale,
    StartPlan,
    Suppress,
    cooldown_for,
    decide,
)
from services.planner.targets import DeploymentRecord
from shared.contracts import BreachDetected
from shared.settings import PlannerSettings

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
HISTORY = [
    DeploymentRecord("v1", "succeeded", NOW - timedelta(days=3), 1),
    DeploymentRecord("v2", "succeeded", NOW - timedelta(days=2), 2),
    DeploymentRecord("v3", "succeeded", NOW - timedelta(days=1), 3),
]


def breach(version: str | None = "v3", trigger: str = "error_rate") -> BreachDetected:
    return BreachDetected(
        environment="production",
        service="checkout",
        version=version,
        trigger=trigger,
        measured=0.2,
        threshold=0.1,
        samples=50,
    )


def context(**overrides: object) -> BreachContext:
    values: dict[str, object] = {
        "active_plan_id": None,
        "cooldown_until": None,
        "history": HISTORY,
        "current_version": "v3",
        "bad_versions": set(),
        "recent_automatic_plans": 0,
    }
    values.update(overrides)
    return BreachContext(**values)


def test_decide_starts_plan():
    assert decide(breach(), context(), now=NOW, loop_guard_max=2) == StartPlan("v3", "v2")


def test_decide_in_progress_first():
    decision = decide(
        breach(),
        context(
            active_plan_id="p1", cooldown_until=NOW + timedelta(minutes=5), recent_automatic_plans=5
        ),
        now=NOW,
        loop_guard_max=2,
    )
    assert isinstance(decision, Suppress)
    assert decision.reason == "in_progress"
    assert decision.plan_id == "p1"
    assert decision.sets_cooldown is False


def test_decide_cooldown_before_loop_guard():
    decision = decide(
        breach(),
        context(cooldown_until=NOW + timedelta(seconds=1), recent_automatic_plans=5),
        now=NOW,
        loop_guard_max=2,
    )
    assert isinstance(decision, Suppress)
    assert decision.reason == "cooldown"
    assert decision.sets_cooldown is False


def test_decide_cooldown_expired():
    decision = decide(breach(), context(cooldown_until=NOW), now=NOW, loop_guard_max=2)
    assert isinstance(decision, StartPlan)


def test_decide_loop_guard():
    decision = decide(breach(), context(recent_automatic_plans=2), now=NOW, loop_guard_max=2)
    assert isinstance(decision, Suppress)
    assert decision.reason == "loop_guard"
    assert decision.needs_manual_action is True
    assert decision.sets_cooldown is True


def test_decide_loop_guard_below_max():
    decision = decide(breach(), context(recent_automatic_plans=1), now=NOW, loop_guard_max=2)
    assert isinstance(decision, StartPlan)


def test_decide_no_target():
    decision = decide(
        breach("v1"), context(history=HISTORY[:1], current_version="v1"), now=NOW, loop_guard_max=2
    )
    assert isinstance(decision, Suppress)
    assert decision.reason == "no_target"
    assert decision.needs_manual_action is True
    assert decision.sets_cooldown is True


def test_decide_no_target_without_any_version():
    decision = decide(
        breach(None), context(history=[], current_version=None), now=NOW, loop_guard_max=2
    )
    assert isinstance(decision, Suppress)
    assert decision.reason == "no_target"
    assert "no current version" in decision.detail


def test_decide_stale_breach_ignored():
    decision = decide(breach("v2"), context(), now=NOW, loop_guard_max=2)
    assert isinstance(decision, IgnoreStale)


def test_decide_bad_versions_skipped():
    decision = decide(breach(), context(bad_versions={"v2"}), now=NOW, loop_guard_max=2)
    assert decision == StartPlan("v3", "v1")


def test_cooldown_defaults():
    settings = PlannerSettings()
    assert cooldown_for(settings, "production", "checkout", "error_rate") == timedelta(minutes=5)
    assert cooldown_for(settings, "production", "checkout", "health_check") == timedelta(minutes=1)
    assert cooldown_for(settings, "production", "checkout", "budget_exceeded") == timedelta(hours=1)


def test_cooldown_override_per_service():
    settings = PlannerSettings(cooldown_overrides={"staging/checkout": {"latency": 30}})
    assert cooldown_for(settings, "staging", "checkout", "latency") == timedelta(seconds=30)
    assert cooldown_for(settings, "staging", "checkout", "error_rate") == timedelta(minutes=5)
    assert cooldown_for(settings, "production", "checkout", "latency") == timedelta(minutes=5)


def test_decide_cooldown_defers_breach():
    until = NOW + timedelta(minutes=3)
    decision = decide(breach(None), context(cooldown_until=until), now=NOW, loop_guard_max=2)
    assert isinstance(decision, Suppress)
    assert decision.reason == "cooldown"
    assert decision.recheck_at == until
    assert decision.version == "v3"
    assert decision.needs_manual_action is False
    assert f"re-checked at {until.isoformat()}" in decision.detail


def test_decide_cooldown_stale_not_deferred():
    decision = decide(
        breach("v2"), context(cooldown_until=NOW + timedelta(minutes=3)), now=NOW, loop_guard_max=2
    )
    assert isinstance(decision, Suppress)
    assert decision.reason == "cooldown"
    assert decision.recheck_at is None
    assert decision.needs_manual_action is False
    assert "will not be re-checked" in decision.detail


def test_decide_cooldown_after_manual_action():
    for cause, manual in [("plan", False), ("no_target", True), ("loop_guard", True)]:
        decision = decide(
            breach(),
            context(cooldown_until=NOW + timedelta(minutes=3), cooldown_cause=cause),
            now=NOW,
            loop_guard_max=2,
        )
        assert isinstance(decision, Suppress), cause
        assert decision.needs_manual_action is manual, cause
        assert decision.recheck_at is not None, cause
