"""The executor's runner on a real database, with a recording driver and event sink.

These tests cover the step logic (order, retries, timeouts, compensation, cancels, takeovers)
quickly; the cases against real processes and a real nats-server are in test_executor_cases.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from uuid import uuid4

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY
from sqlalchemy import update

from services.executor.drivers import registry
from services.executor import executor as executor_module
from services.executor.executor import Executor
from services.executor.models import PlanRow
from services.executor.repository import ExecutorRepository
from services.runner import migration_folders
from shared.contracts import CancelPlan, ExecutePlan, PlanCreated, utc_now
from shared.db import open_database, upgrade
from shared.settings import DriverConfig, Settings, StepPolicy
from tests.integration.executor_helpers.fakes import FakeDriver, FakeTraffic, ListSink, Recorder

FAST_STEPS = {
    "validate_target": StepPolicy(timeout_seconds=2, attempts=2, backoff_seconds=0.01),
    "resume_traffic": StepPolicy(timeout_seconds=2, attempts=3, backoff_seconds=0.01),
    "notify": StepPolicy(timeout_seconds=2, attempts=2, backoff_seconds=0.01),
}


def plan_created(service: str = "checkout", **overrides: object) -> PlanCreated:
    values: dict[str, object] = {
        "plan_id": uuid4(),
        "environment": "production",
        "service": service,
        "from_version": "v1.2.0",
        "to_version": "v1.1.0",
        "trigger": "error_rate",
        "trigger_type": "automatic",
        "actor": "detector",
        "created_at": utc_now(),
    }
    values.update(overrides)
    return PlanCreated.model_validate(values)


@pytest.fixture(autouse=True)
def fake_adapters(monkeypatch):
    monkeypatch.setitem(registry.DRIVERS, "none", FakeDriver)
    monkeypatch.setitem(registry.TRAFFIC, "none", FakeTraffic)


@contextlib.asynccontextmanager
async def open_repo(url: str):
    await asyncio.to_thread(upgrade, url, migration_folders(["executor"]))
    db = open_database(url)
    try:
        yield ExecutorRepository(db)
    finally:
        await db.close()


@pytest.fixture
async def repo(sqlite_url):
    """A repository on SQLite, for the step logic."""
    async with open_repo(sqlite_url) as repository:
        yield repository


@pytest.fixture
async def shared_repo(database_url):
    """A repository on SQLite, then on PostgreSQL, for claims, cancels, leases and takeovers."""
    async with open_repo(database_url) as repository:
        yield repository


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_executor(
    repo, sink, recorder, *, drain_seconds: float = 0.0, **executor: object
) -> Executor:
    options = {"recorder": recorder, "drain_seconds": drain_seconds}
    values: dict[str, object] = {
        "heartbeat_seconds": 0.05,
        "stale_after_seconds": 0.5,
        "steps": FAST_STEPS,
        "services": {"checkout": DriverConfig(options=options, traffic_options=options)},
    }
    values.update(executor)
    settings = Settings.model_validate({"executor": values})
    return Executor(
        settings=settings, repo=repo, sink=sink, tracer=TracerProvider().get_tracer("test")
    )


async def wait_for_status(repo, plan_id, status: str, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await repo.load(str(plan_id))
        if state is not None and state.status == status:
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"plan {plan_id} is {state and state.status}, expected {status}")
        await asyncio.sleep(0.02)


async def test_plan_completes_in_order(repo, recorder):
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "completed")

    assert recorder.order == ["validate", "pause", "switch", "health", "resume", "cleanup"]
    assert all(step.status == "succeeded" for step in state.steps.values())
    finished = sink.of_type("PlanFinished")
    assert len(finished) == 1
    assert finished[0].outcome == "completed"
    assert finished[0].actor == "alice"
    ends = [e for e in sink.of_type("StepChanged") if e.status == "succeeded"]
    assert [e.step for e in ends] == list(state.steps)
    assert all(e.duration_ms is not None and e.duration_ms >= 0 for e in ends)
    assert len({e.event_id for _, e in sink.sent}) == len(sink.sent)


def failed_plans_count() -> float:
    return (
        REGISTRY.get_sample_value("travi_executor_plans_finished_total", {"outcome": "failed"}) or 0
    )


async def test_switch_failure_resumes_traffic(repo, recorder):
    recorder.fail.add("switch")
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()
    failed_before = failed_plans_count()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "failed")

    while executor.runners:
        await asyncio.sleep(0.01)
    assert failed_plans_count() == failed_before + 1

    assert recorder.order == ["validate", "pause", "switch", "resume"]
    assert recorder.paused is False
    assert state.failed_step == "switch_version"
    assert state.steps["verify_health"].status == "skipped"
    assert state.steps["cleanup"].status == "skipped"
    assert state.steps["resume_traffic"].status == "succeeded"
    assert state.steps["notify"].status == "succeeded"
    finished = sink.of_type("PlanFinished")
    assert [f.outcome for f in finished] == ["failed"]
    assert finished[0].failed_step == "switch_version"
    assert "switch failed on purpose" in finished[0].error


async def test_failed_plan_finishes_after_resume(repo, recorder):
    recorder.fail.add("switch")
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "failed")

    resumed = [
        e for e in sink.of_type("StepChanged")
        if e.step == "resume_traffic" and e.status == "succeeded"
    ]
    finished = sink.of_type("PlanFinished")
    assert len(resumed) == 1
    assert len(finished) == 1
    assert finished[0].finished_at >= resumed[0].finished_at
    assert state.finished_at == finished[0].finished_at


async def test_validate_failure_before_pause_skips_resume(repo, recorder):
    recorder.fail.add("validate")
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "failed")

    assert recorder.order == ["validate", "validate"]
    assert state.steps["validate_target"].attempt == 2
    assert state.steps["resume_traffic"].status == "skipped"
    assert state.steps["pause_traffic"].status == "skipped"


async def test_step_timeout_fails_step(repo, recorder):
    recorder.sleep["health"] = 5
    sink = ListSink()
    steps = {**FAST_STEPS, "verify_health": StepPolicy(timeout_seconds=0.2, attempts=1)}
    executor = make_executor(repo, sink, recorder, steps=steps)
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "failed")

    assert state.failed_step == "verify_health"
    assert "timed out" in state.error
    assert recorder.paused is False


async def test_cancel_from_other_replica_during_drain(shared_repo, recorder):
    repo = shared_repo
    sink = ListSink()
    running = make_executor(repo, sink, recorder, drain_seconds=30)
    other = make_executor(repo, ListSink(), recorder)
    plan = plan_created()

    await running.execute(ExecutePlan(plan=plan, actor="alice"))
    while recorder.calls["pause"] == 0:
        await asyncio.sleep(0.01)
    await other.cancel(CancelPlan(plan=plan, actor="bob", reason="wrong target"))
    state = await wait_for_status(repo, plan.plan_id, "cancelled")

    assert recorder.calls["switch"] == 0
    assert recorder.paused is False
    assert state.steps["drain_connections"].status == "skipped"
    assert state.steps["switch_version"].status == "skipped"
    finished = sink.of_type("PlanFinished")
    assert [f.outcome for f in finished] == ["cancelled"]
    assert finished[0].actor == "bob"
    assert "wrong target" in finished[0].error


async def test_cancel_before_execute_is_tombstone(shared_repo, recorder):
    repo = shared_repo
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()

    await executor.cancel(CancelPlan(plan=plan, actor="bob"))
    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    await asyncio.sleep(0.1)

    state = await repo.load(str(plan.plan_id))
    assert state.status == "cancelled"
    assert state.outcome_published
    assert recorder.order == []
    finished = sink.of_type("PlanFinished")
    assert [f.outcome for f in finished] == ["cancelled"]
    assert finished[0].started_at is None


async def test_execute_twice_runs_once(shared_repo, recorder):
    repo = shared_repo
    sink = ListSink()
    first = make_executor(repo, sink, recorder)
    second = make_executor(repo, sink, recorder)
    plan = plan_created()
    command = ExecutePlan(plan=plan, actor="alice")

    await asyncio.gather(first.execute(command), second.execute(command), first.execute(command))
    await wait_for_status(repo, plan.plan_id, "completed")

    assert recorder.calls["switch"] == 1
    assert len(sink.of_type("PlanFinished")) == 1


async def crash_after_switch_started(repo, plan) -> None:
    """Store a plan as an executor that died inside switch_version would have left it."""
    now = utc_now()
    await repo.claim(plan, actor="alice", owner="dead", trace_context={}, now=now)
    for step in ("validate_target", "pause_traffic", "drain_connections"):
        await repo.step_started(str(plan.plan_id), 1, step, 1, now)
        await repo.step_finished(
            str(plan.plan_id), 1, step, status="succeeded", now=now, duration_ms=1.0, error=None
        )
    await repo.step_started(str(plan.plan_id), 1, "switch_version", 1, now)
    await repo.switch_started(str(plan.plan_id), 1, now - timedelta(seconds=60))
    await repo.heartbeat(str(plan.plan_id), 1, now - timedelta(seconds=60))


async def test_takeover_confirms_switch_without_rerun(shared_repo, recorder):
    repo = shared_repo
    plan = plan_created()
    await crash_after_switch_started(repo, plan)
    recorder.switched_to = plan.to_version
    recorder.paused = True
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)

    assert await executor.sweep_once() == 1
    state = await wait_for_status(repo, plan.plan_id, "completed")

    assert recorder.calls["switch"] == 0
    assert recorder.paused is False
    assert state.lease == 2
    assert state.takeovers == 1


async def test_takeover_unknown_switch_fails_cleanly(shared_repo, recorder):
    repo = shared_repo
    plan = plan_created()
    await crash_after_switch_started(repo, plan)
    recorder.paused = True
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)

    await executor.sweep_once()
    state = await wait_for_status(repo, plan.plan_id, "failed")

    assert recorder.calls["switch"] == 0
    assert recorder.paused is False
    assert state.failed_step == "switch_version"
    escalations = sink.of_type("EscalationRaised")
    assert [e.reason for e in escalations] == ["switch_state_unknown"]


async def test_lost_lease_stops_runner(shared_repo, recorder):
    repo = shared_repo
    recorder.sleep["pause"] = 1.0
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    while recorder.calls["pause"] == 0:
        await asyncio.sleep(0.01)
    stale = utc_now() + timedelta(seconds=60)
    assert await repo.take_over(str(plan.plan_id), 1, owner="thief", now=utc_now(), cutoff=stale)
    while executor.runners:
        await asyncio.sleep(0.02)

    state = await repo.load(str(plan.plan_id))
    assert state.status == "in_progress"
    assert recorder.calls["switch"] == 0


async def test_unpublished_outcome_is_published_by_sweep(repo, recorder):
    sink = ListSink()
    sink.fail_types.add("PlanFinished")
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "completed")
    assert not state.outcome_published
    assert state.steps["notify"].status == "failed"

    sink.fail_types.clear()
    await asyncio.sleep(0.6)
    await executor.sweep_once()
    state = await repo.load(str(plan.plan_id))
    assert state.outcome_published
    assert [f.outcome for f in sink.of_type("PlanFinished")] == ["completed"]


async def test_stop_hands_plan_back(shared_repo, recorder):
    repo = shared_repo
    sink = ListSink()
    first = make_executor(repo, sink, recorder, drain_seconds=30)
    plan = plan_created()
    await first.execute(ExecutePlan(plan=plan, actor="alice"))
    while (await repo.load(str(plan.plan_id))).steps["drain_connections"].status != "running":
        await asyncio.sleep(0.01)
    await first.stop()

    second = make_executor(repo, sink, recorder, drain_seconds=0.1)
    assert await second.sweep_once() == 1
    await wait_for_status(repo, plan.plan_id, "completed")
    assert recorder.calls["switch"] == 1
    assert recorder.calls["pause"] == 1
    assert len(sink.of_type("PlanFinished")) == 1


def backup_executor(repo, sink, recorder, tmp_path, database_url: str) -> Executor:
    options = {
        "recorder": recorder,
        "backup_database_url": database_url,
        "backup_directory": str(tmp_path / "backups"),
        "backup_keep": 3,
    }
    config = DriverConfig(
        options=options, traffic_options={"recorder": recorder}, backup_before_switch=True
    )
    return make_executor(repo, sink, recorder, services={"checkout": config})


async def test_backup_runs_before_switch(repo, recorder, tmp_path):
    import sqlite3

    from shared.backup import list_backups

    app_db = tmp_path / "app.db"
    with sqlite3.connect(app_db) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        connection.execute("INSERT INTO orders DEFAULT VALUES")
    sink = ListSink()
    executor = backup_executor(repo, sink, recorder, tmp_path, f"sqlite:///{app_db}")
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    await wait_for_status(repo, plan.plan_id, "completed")

    backups = list_backups(tmp_path / "backups")
    assert len(backups) == 1
    assert "orders" in backups[0].tables
    assert (
        backups[0].created_at
        <= (await repo.load(str(plan.plan_id))).steps["switch_version"].finished_at
    )
    assert recorder.calls["switch"] == 1


async def test_failed_backup_stops_switch(repo, recorder, tmp_path):
    sink = ListSink()
    executor = backup_executor(repo, sink, recorder, tmp_path, "mysql://nowhere/app")
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "failed")

    assert state.failed_step == "switch_version"
    assert "backup before the switch failed" in state.error
    assert recorder.calls["switch"] == 0
    assert recorder.paused is False
    assert not state.switch_started


async def test_plan_taken_over_too_often_fails(shared_repo, recorder):
    repo = shared_repo
    plan = plan_created()
    await crash_after_switch_started(repo, plan)
    plan_id = str(plan.plan_id)
    for lease in (1, 2, 3, 4):
        later = utc_now() + timedelta(seconds=60)
        assert await repo.take_over(plan_id, lease, owner="dying", now=utc_now(), cutoff=later)
        await repo.release(plan_id, lease + 1)
    recorder.paused = True
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)

    await executor.sweep_once()
    state = await wait_for_status(repo, plan.plan_id, "failed")

    assert state.takeovers == 5
    assert "taken over 5 times" in state.error
    assert recorder.calls["switch"] == 0
    assert recorder.paused is False


async def test_bad_driver_config_fails_plan(repo, recorder):
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    executor.settings.executor.services["checkout"] = DriverConfig(driver="releases")
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "failed")

    assert state.failed_step == "validate_target"
    assert "invalid driver configuration" in state.error
    assert "root is missing" in state.error
    assert recorder.order == []
    assert [f.outcome for f in sink.of_type("PlanFinished")] == ["failed"]


async def test_failed_resume_is_escalated(repo, recorder):
    recorder.fail.update({"switch", "resume"})
    sink = ListSink()
    executor = make_executor(repo, sink, recorder)
    plan = plan_created()

    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    state = await wait_for_status(repo, plan.plan_id, "failed")

    assert state.failed_step == "switch_version"
    assert "traffic could not be resumed" in state.error
    assert recorder.calls["resume"] == 3
    assert [e.reason for e in sink.of_type("EscalationRaised")] == ["traffic_not_resumed"]
    assert "traffic could not be resumed" in sink.of_type("PlanFinished")[0].error


async def test_stop_lets_plan_finish(shared_repo, recorder):
    recorder.sleep["switch"] = 0.5
    sink = ListSink()
    executor = make_executor(shared_repo, sink, recorder)
    plan = plan_created()
    await executor.execute(ExecutePlan(plan=plan, actor="alice"))
    while recorder.calls["switch"] == 0:
        await asyncio.sleep(0.01)
    await executor.stop()
    state = await shared_repo.load(str(plan.plan_id))
    assert state.status == "completed"
    assert recorder.calls["switch"] == 1
    assert recorder.paused is False


async def test_stop_waits_for_switch(shared_repo, recorder, monkeypatch):
    monkeypatch.setattr(executor_module, "FINISH_GRACE_SECONDS", 0.1)
    repo = shared_repo
    recorder.sleep["switch"] = 0.5
    sink = ListSink()
    first = make_executor(repo, sink, recorder)
    plan = plan_created()
    await first.execute(ExecutePlan(plan=plan, actor="alice"))
    while recorder.calls["switch"] == 0:
        await asyncio.sleep(0.01)
    await first.stop()
    state = await repo.load(str(plan.plan_id))
    assert state.steps["switch_version"].status == "succeeded"
    assert state.steps["verify_health"].status == "pending"

    second = make_executor(repo, sink, recorder)
    assert await second.sweep_once() == 1
    await wait_for_status(repo, plan.plan_id, "completed")
    assert recorder.calls["switch"] == 1
    assert recorder.paused is False


async def test_sweep_skips_invalid_plan(shared_repo, recorder):
    repo = shared_repo
    broken, plan = plan_created(), plan_created()
    await crash_after_switch_started(repo, broken)
    await crash_after_switch_started(repo, plan)
    async with repo.db.engine.begin() as connection:
        await connection.execute(
            update(PlanRow)
            .where(PlanRow.plan_id == str(broken.plan_id))
            .values(plan_json='{"plan_id": "not a plan"}')
        )
    recorder.switched_to = plan.to_version
    executor = make_executor(repo, ListSink(), recorder)

    assert await executor.sweep_once() == 1
    await wait_for_status(repo, plan.plan_id, "completed")
