"""The stats projection's merge rules, without a database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from services.stats import projection
from services.stats.models import StatsPlan, StatsStep
from shared.contracts import BreachDetected, CancelPlan, ExecutePlan, PlanCreated, PlanFinished, StepChanged

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PLAN_ID = uuid4()


def created(**overrides: object) -> PlanCreated:
    values: dict[str, object] = {
        "plan_id": PLAN_ID, "environment": "production", "service": "checkout",
        "from_version": "v2", "to_version": "v1", "trigger": "error_rate",
        "trigger_type": "automatic", "actor": "system", "created_at": T0,
        "occurred_at": T0,
        "breach": BreachDetected(environment="production", service="checkout",
                                 trigger="error_rate", measured=0.3, threshold=0.1,
                                 detected_at=T0 - timedelta(seconds=10)),
    }
    values.update(overrides)
    return PlanCreated.model_validate(values)


def step(name: str, status: str, attempt: int = 1, ms: float | None = None, at: datetime = T0) -> StepChanged:
    return StepChanged(
        plan_id=PLAN_ID, environment="production", service="checkout", step=name, status=status,
        attempt=attempt, started_at=at, finished_at=at + timedelta(milliseconds=ms) if ms else None,
        duration_ms=ms, occurred_at=at + timedelta(milliseconds=ms or 0),
    )


def finished(outcome: str = "completed", seconds: float = 8.0, **overrides: object) -> PlanFinished:
    values: dict[str, object] = {
        "plan_id": PLAN_ID, "environment": "production", "service": "checkout",
        "from_version": "v2", "to_version": "v1", "trigger": "error_rate",
        "trigger_type": "automatic", "outcome": outcome, "started_at": T0 + timedelta(seconds=1),
        "finished_at": T0 + timedelta(seconds=1 + seconds), "duration_ms": seconds * 1000,
        "occurred_at": T0 + timedelta(seconds=1 + seconds),
    }
    values.update(overrides)
    return PlanFinished.model_validate(values)


def replay(events) -> tuple[StatsPlan, dict[str, StatsStep]]:
    """Apply events to a fresh plan with the projection's rules, as the store does."""
    plan: StatsPlan | None = None
    steps: dict[str, StatsStep] = {}
    for event in events:
        if plan is None:
            plan = projection.new_plan(str(PLAN_ID), event.occurred_at)
        source = event.plan if isinstance(event, ExecutePlan | CancelPlan) else event
        projection.note_event(plan, event.occurred_at, source.environment, source.service)
        if isinstance(event, PlanCreated):
            projection.apply_created(plan, event)
        elif isinstance(event, ExecutePlan | CancelPlan):
            projection.apply_command(plan, event)
        elif isinstance(event, StepChanged):
            steps[event.step] = projection.apply_step(plan, steps.get(event.step), event)
        else:
            projection.apply_finished(plan, event)
    assert plan is not None
    return plan, steps


def state(plan: StatsPlan, steps: dict[str, StatsStep]) -> tuple:
    plan_fields = tuple(
        getattr(plan, name)
        for name in ("status", "trigger", "trigger_type", "created_at", "started_at",
                     "finished_at", "duration_ms", "first_event_at", "sort_at")
    )
    step_fields = tuple(
        sorted((s.name, s.status, s.attempt, s.started_at, s.finished_at, s.duration_ms, s.error)
               for s in steps.values())
    )
    return plan_fields, step_fields, projection.contribution(plan)


def test_status_only_moves_forward():
    assert projection.advance_status("pending", "in_progress") == "in_progress"
    assert projection.advance_status("in_progress", "pending") == "in_progress"
    assert projection.advance_status("completed", "in_progress") == "completed"
    assert projection.advance_status("failed", "completed") == "failed"


def test_every_order_gives_same_plan():
    plan_created = created()
    events = [
        plan_created,
        ExecutePlan(plan=plan_created, actor="system", occurred_at=T0 + timedelta(milliseconds=5)),
        step("validate_target", "running", at=T0 + timedelta(seconds=1)),
        step("validate_target", "succeeded", ms=100, at=T0 + timedelta(seconds=1)),
        step("switch_version", "failed", ms=300, at=T0 + timedelta(seconds=2)),
        step("switch_version", "succeeded", attempt=2, ms=900, at=T0 + timedelta(seconds=3)),
        finished(),
    ]
    expected = state(*replay(events))
    assert expected[0][0] == "completed"
    for order in itertools.permutations(events):
        assert state(*replay(order)) == expected


def test_late_pending_does_not_regress_final():
    plan, _ = replay([finished("failed"), created()])
    assert plan.status == "failed"
    assert plan.created_at == T0


def test_second_outcome_is_ignored():
    plan, _ = replay([created(), finished("completed"), finished("failed", seconds=2)])
    assert plan.status == "completed"
    assert plan.duration_ms == 8000


def test_cancel_command_keeps_status():
    plan_created = created()
    plan, _ = replay([plan_created, CancelPlan(plan=plan_created, actor="alice")])
    assert plan.status == "pending"


def test_step_retry_keeps_highest_attempt():
    _, steps = replay([
        step("verify_health", "succeeded", attempt=2, ms=50),
        step("verify_health", "failed", attempt=1, ms=20),
        step("verify_health", "running", attempt=2),
    ])
    assert steps["verify_health"].attempt == 2
    assert steps["verify_health"].status == "succeeded"
    assert steps["verify_health"].duration_ms == 50


def test_step_duration_from_times_when_not_reported():
    assert projection.step_duration(T0, T0 + timedelta(milliseconds=250), None) == 250
    assert projection.step_duration(T0, None, None) is None
    assert projection.step_duration(T0 + timedelta(seconds=1), T0, None) is None
    assert projection.step_duration(T0, T0, 12.5) == 12.5


def test_contribution_needs_trigger():
    plan, _ = replay([step("pause_traffic", "running")])
    assert plan.status == "in_progress"
    assert projection.contribution(plan) is None


def test_contribution_counts_duration_of_final_plans():
    plan, _ = replay([created(), finished("completed", seconds=8.4)])
    part = projection.contribution(plan)
    assert part is not None
    assert part.counts() == {"total": 1, "completed": 1, "duration_sum_ms": 8400, "duration_count": 1}
    assert part.counts(-1)["total"] == -1
    assert part.day == T0.date()


def test_reversed_times_leave_out_duration():
    plan, _ = replay([
        created(),
        finished(started_at=T0 + timedelta(seconds=10), finished_at=T0, duration_ms=None),
    ])
    part = projection.contribution(plan)
    assert projection.has_reversed_times(plan)
    assert part is not None
    assert part.duration_ms is None
    assert "duration_count" not in part.counts()


def test_plan_without_start_has_no_duration():
    plan, _ = replay([created(), finished("cancelled", started_at=None, duration_ms=None)])
    assert projection.counted_duration_ms(plan) is None


def test_bucket_moves_to_creation_time():
    early = finished(occurred_at=T0 + timedelta(days=2))
    plan, _ = replay([early])
    before = projection.contribution(plan)
    projection.apply_created(plan, created(created_at=T0 - timedelta(days=1)))
    after = projection.contribution(plan)
    assert before is not None and after is not None
    assert before.bucket_at == T0 + timedelta(seconds=1)
    assert after.bucket_at == T0 - timedelta(days=1)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("completed", 19.0), ("failed", None), ("cancelled", None)],
)
def test_recovery_only_for_completed(outcome, expected):
    plan, _ = replay([created(), finished(outcome)])
    assert projection.recovery_seconds(plan) == expected


def test_recovery_needs_breach():
    plan, _ = replay([created(breach=None, trigger="manual", trigger_type="manual"), finished()])
    assert projection.recovery_seconds(plan) is None


def test_count_changes_cover_four_levels():
    plan, _ = replay([created(), finished("completed", seconds=2)])
    daily, totals = projection.count_changes(None, projection.contribution(plan))
    scopes = {(key[0], key[1]) for key in totals}
    assert scopes == {("production", "checkout"), ("production", "*"), ("*", "checkout"), ("*", "*")}
    assert len(daily) == 4
    assert all(counts["completed"] == 1 for counts in totals.values())
    assert all(key[0] == T0.date() for key in daily)


def test_count_changes_move_status():
    plan, _ = replay([created()])
    before = projection.contribution(plan)
    projection.apply_finished(plan, finished("failed", seconds=3))
    daily, totals = projection.count_changes(before, projection.contribution(plan))
    counts = totals[("*", "*", "error_rate", "automatic")]
    assert counts == {"total": 0, "pending": -1, "failed": 1, "duration_sum_ms": 3000, "duration_count": 1}
    assert len(daily) == 4


def test_count_changes_drop_no_change():
    plan, _ = replay([created()])
    part = projection.contribution(plan)
    assert projection.count_changes(part, part) == ({}, {})
