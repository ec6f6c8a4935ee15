"""The planner's use cases against a real database (SQLite and PostgreSQL), with a fake clock.

Events go to an in-memory publisher here; tests/integration/test_planner_bus.py runs the same
stories through a real nats-server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.planner import repository
from services.planner.errors import PlanConflict, PlanNotFound, RollbackRejected
from services.planner.events import derived_id
from services.planner.models import (
    BadVersion,
    Cooldown,
    Deployment,
    OutboxMessage,
    Plan,
    Suppression,
)
from services.planner.planning import ManualRollback, Planner
from services.planner.service import BackgroundLoop
from services.runner import migration_folders
from shared.bus import CANCEL_SUBJECT, EXECUTE_SUBJECT
from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    CancelPlan,
    Contract,
    DeploymentRecorded,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
)
from shared.db import Database, open_database, upgrade
from shared.settings import PlannerSettings

ENV = "production"
SVC = "checkout"
T10 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, hour: int, minute: int, second: int = 0) -> None:
        self.now = T10.replace(hour=hour, minute=minute, second=second)


class RecordingPublisher:
    """Keeps every published event, and fails the next ``failures_left`` publishes."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Contract]] = []
        self.failures_left = 0

    async def __call__(self, subject: str, event: Contract) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("the bus is down")
        self.events.append((subject, event))

    def of(self, kind: type) -> list:
        return [event for _, event in self.events if isinstance(event, kind)]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await asyncio.to_thread(upgrade, database_url, migration_folders(["planner"]))
    database = open_database(database_url)
    yield database
    await database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T10)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def planner(db: Database, publisher: RecordingPublisher, clock: FakeClock) -> Planner:
    return Planner(db, publisher, PlannerSettings(), clock=clock)


def breach(version: str | None, trigger: str = "error_rate") -> BreachDetected:
    return BreachDetected(
        environment=ENV,
        service=SVC,
        version=version,
        trigger=trigger,
        measured=0.25,
        threshold=0.1,
        window_seconds=60,
        samples=200,
    )


async def deploy(
    planner: Planner, version: str, status: str = "succeeded", minutes: float = 0
) -> None:
    record = DeploymentRecorded(
        environment=ENV,
        service=SVC,
        version=version,
        status=status,
        actor="ci",
        deployed_at=planner.clock() + timedelta(minutes=minutes),
    )
    await planner.record_deployment(record, f"deployments.{ENV}.{SVC}")


async def deploy_history(planner: Planner, *entries: tuple[str, str]) -> None:
    """Record deployments one minute apart, ending one minute before the clock's time."""
    for index, (version, status) in enumerate(entries):
        await deploy(planner, version, status, minutes=index - len(entries))


async def finish(planner: Planner, plan_id: UUID, outcome: str = "completed") -> None:
    plan = await planner.get_plan(plan_id)
    await planner.apply_outcome(
        PlanFinished(
            plan_id=plan_id,
            environment=ENV,
            service=SVC,
            from_version=plan.from_version,
            to_version=plan.to_version,
            trigger=plan.trigger,
            trigger_type=plan.trigger_type,
            outcome=outcome,
            started_at=plan.started_at,
            finished_at=planner.clock(),
            duration_ms=1000.0,
        ),
        f"rollback.outcome.{ENV}.{SVC}",
    )


async def count(db: Database, model: type, *conditions: object) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*conditions))


async def plans(db: Database) -> list[Plan]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Plan).order_by(Plan.created_at)))


# The cases that must come out right.


async def test_target_skips_failed_version(planner, publisher, db):
    await deploy_history(
        planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "failed"), ("v4", "succeeded")
    )

    await planner.handle_breach(breach("v4"), f"rollback.breach.{ENV}.{SVC}")

    [created] = publisher.of(PlanCreated)
    assert created.from_version == "v4"
    assert created.to_version == "v2"
    assert created.trigger_type == "automatic"
    assert created.breach is not None
    [command] = publisher.of(ExecutePlan)
    assert command.plan == created
    subjects = [subject for subject, _ in publisher.events]
    assert subjects == [f"rollback.plan.{ENV}.{SVC}", EXECUTE_SUBJECT]
    [plan] = await plans(db)
    assert plan.status == "in_progress"
    assert await count(db, BadVersion, BadVersion.version == "v4") == 1


async def test_explicit_failed_target_rejected(planner, db):
    await deploy_history(
        planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "failed"), ("v4", "succeeded")
    )

    with pytest.raises(RollbackRejected) as caught:
        await planner.create_manual_plan(ManualRollback(ENV, SVC, "v3"), "alice")

    assert caught.value.field == "targetVersion"
    assert "never deployed successfully" in str(caught.value)
    assert await plans(db) == []


async def test_first_version_gets_no_target(planner, publisher, db):
    await deploy_history(planner, ("v1", "succeeded"))

    await planner.handle_breach(breach("v1"), f"rollback.breach.{ENV}.{SVC}")

    assert publisher.of(PlanCreated) == []
    assert publisher.of(ExecutePlan) == []
    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "no_target"
    assert suppressed.needs_manual_action is True
    assert await plans(db) == []
    assert await count(db, Suppression, Suppression.reason == "no_target") == 1
    assert await count(db, Cooldown, Cooldown.cause == "no_target") == 1


async def test_cooldown_survives_restart(db, database_url, publisher, clock):
    first = Planner(db, publisher, PlannerSettings(), clock=clock)
    await deploy_history(first, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
    await first.handle_breach(breach("v3"), "rollback.breach.production.checkout")
    [created] = publisher.of(PlanCreated)
    clock.set(10, 0, 30)
    await finish(first, created.plan_id)
    await db.close()

    # The restart at 10:01: a new planner on a new connection pool.
    clock.set(10, 1)
    restarted_db = open_database(database_url)
    restarted = Planner(restarted_db, publisher, PlannerSettings(), clock=clock)
    clock.set(10, 2)
    await restarted.handle_breach(breach("v2"), "rollback.breach.production.checkout")

    assert len(publisher.of(PlanCreated)) == 1
    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "cooldown"

    # After the five minutes, a breach of the restored version acts again.
    clock.set(10, 6)
    await restarted.handle_breach(breach("v2"), "rollback.breach.production.checkout")
    second = publisher.of(PlanCreated)[-1]
    assert second.plan_id != created.plan_id
    assert second.to_version == "v1"
    await restarted_db.close()


async def test_loop_guard_and_bad_version(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
    await planner.handle_breach(breach("v3"), "rollback.breach.production.checkout")
    clock.set(10, 1)
    await finish(planner, publisher.of(PlanCreated)[0].plan_id)

    # v3 is deployed again after the cooldown, and breaches again.
    clock.set(10, 10)
    await deploy(planner, "v3")
    clock.set(10, 11)
    await planner.handle_breach(breach("v3"), "rollback.breach.production.checkout")
    clock.set(10, 12)
    await finish(planner, publisher.of(PlanCreated)[1].plan_id)

    clock.set(10, 20)
    await deploy(planner, "v3")
    clock.set(10, 21)
    await planner.handle_breach(breach("v3"), "rollback.breach.production.checkout")

    created = publisher.of(PlanCreated)
    assert [(p.from_version, p.to_version) for p in created] == [("v3", "v2"), ("v3", "v2")]
    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "loop_guard"
    assert suppressed.needs_manual_action is True
    assert len(await plans(db)) == 2

    # v3 is never a target, also for a manual rollback from v2 once the hour has passed.
    clock.set(11, 30)
    await deploy(planner, "v2")
    with pytest.raises(RollbackRejected) as caught:
        await planner.create_manual_plan(ManualRollback(ENV, SVC, "v3"), "alice")
    assert "marked bad" in str(caught.value)
    await planner.handle_breach(breach("v2"), "rollback.breach.production.checkout")
    assert publisher.of(PlanCreated)[-1].to_version == "v1"


# One rollback at a time.


async def test_active_plan_index_rejects_second(db, clock):
    async def insert(plan_id: str, status: str) -> None:
        async with db.sessions() as session, session.begin():
            session.add(
                Plan(
                    id=plan_id,
                    environment=ENV,
                    service=SVC,
                    from_version="v2",
                    to_version="v1",
                    status=status,
                    trigger="manual",
                    trigger_type="manual",
                    actor="alice",
                    reason="",
                    forced=False,
                    created_at=clock(),
                )
            )

    await insert(str(uuid4()), "completed")
    await insert(str(uuid4()), "pending")
    await insert(str(uuid4()), "failed")
    with pytest.raises(IntegrityError):
        await insert(str(uuid4()), "in_progress")
    with pytest.raises(IntegrityError):
        await insert(str(uuid4()), "pending")


async def test_replicas_racing_create_one_plan(db, database_url, clock):
    publisher = RecordingPublisher()
    first = Planner(db, publisher, PlannerSettings(), clock=clock)
    await deploy_history(first, ("v1", "succeeded"), ("v2", "succeeded"))
    other_db = open_database(database_url)
    second = Planner(other_db, publisher, PlannerSettings(), clock=clock)

    async def later(delay: float, coroutine):
        await asyncio.sleep(delay)
        await coroutine

    await asyncio.gather(
        first.handle_breach(breach("v2", "error_rate"), "rollback.breach.production.checkout"),
        later(
            0.01,
            second.handle_breach(breach("v2", "latency"), "rollback.breach.production.checkout"),
        ),
    )
    await other_db.close()

    assert len(await plans(db)) == 1
    assert len(publisher.of(PlanCreated)) == 1
    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "in_progress"
    assert suppressed.plan_id == publisher.of(PlanCreated)[0].plan_id


async def test_race_lost_is_decided_again(db, database_url, clock, monkeypatch, caplog):
    """Both replicas read "no active plan" before either commits; the index settles it."""
    publisher = RecordingPublisher()
    first = Planner(db, publisher, PlannerSettings(), clock=clock)
    await deploy_history(first, ("v1", "succeeded"), ("v2", "succeeded"))
    other_db = open_database(database_url)
    second = Planner(other_db, publisher, PlannerSettings(), clock=clock)
    both_loaded = asyncio.Barrier(2)
    load = repository.load_breach_context

    async def load_then_wait(*args, **kwargs):
        context = await load(*args, **kwargs)
        if context.active_plan_id is None and not db.is_sqlite:
            # SQLite never gets here twice at once: its write lock serialises the two
            # transactions, so the second one reads the first one's plan.
            await both_loaded.wait()
        return context

    monkeypatch.setattr(repository, "load_breach_context", load_then_wait)
    with caplog.at_level(logging.INFO, logger="services.planner.planning"):
        await asyncio.gather(
            first.handle_breach(breach("v2", "error_rate"), "rollback.breach.production.checkout"),
            second.handle_breach(breach("v2", "latency"), "rollback.breach.production.checkout"),
        )
    await other_db.close()

    assert len(await plans(db)) == 1
    assert len(publisher.of(PlanCreated)) == 1
    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "in_progress"
    if not db.is_sqlite:
        assert "Lost a race" in caplog.text


async def test_breach_while_in_progress_suppressed(planner, publisher, db):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    await planner.handle_breach(breach("v2"), "rollback.breach.production.checkout")
    await planner.handle_breach(breach("v2", "latency"), "rollback.breach.production.checkout")

    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "in_progress"
    assert await count(db, Cooldown, Cooldown.trigger == "latency") == 0


# Idempotency.


async def test_redelivered_breach_creates_one_plan(planner, publisher, db):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    event = breach("v2")

    await planner.handle_breach(event, "rollback.breach.production.checkout")
    await planner.handle_breach(event, "rollback.breach.production.checkout")

    assert len(await plans(db)) == 1
    assert len(publisher.of(PlanCreated)) == 1
    assert len(publisher.of(ExecutePlan)) == 1
    assert publisher.of(BreachSuppressed) == []


async def test_crash_before_publish_republishes(planner, publisher, db):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    event = breach("v2")
    publisher.failures_left = 1

    with pytest.raises(ConnectionError):
        await planner.handle_breach(event, "rollback.breach.production.checkout")
    assert publisher.events == []
    [stored] = await plans(db)

    await planner.handle_breach(event, "rollback.breach.production.checkout")

    assert len(await plans(db)) == 1
    [created] = publisher.of(PlanCreated)
    assert str(created.plan_id) == stored.id
    assert len(publisher.of(ExecutePlan)) == 1
    assert await count(db, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0


async def test_suppression_republished_same_id(planner, publisher, db):
    await deploy_history(planner, ("v1", "succeeded"))
    event = breach("v1")
    publisher.failures_left = 1

    with pytest.raises(ConnectionError):
        await planner.handle_breach(event, "rollback.breach.production.checkout")
    await planner.handle_breach(event, "rollback.breach.production.checkout")

    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.event_id == derived_id(event.event_id, "suppressed")
    assert await count(db, Suppression) == 1


async def test_stale_breach_ignored(planner, publisher, db):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))

    await planner.handle_breach(breach("v2"), "rollback.breach.production.checkout")

    assert publisher.events == []
    assert await plans(db) == []


async def test_deployment_recorded_once(planner, db):
    record = DeploymentRecorded(
        environment=ENV,
        service=SVC,
        version="v1",
        status="succeeded",
        actor="ci",
        deployed_at=planner.clock(),
    )
    assert await planner.record_deployment(record, "deployments.production.checkout") is True
    assert await planner.record_deployment(record, "deployments.production.checkout") is False
    assert await count(db, Deployment) == 1


async def test_older_deployment_keeps_current(planner, db, clock):
    await deploy(planner, "v2")
    await deploy(planner, "v1", minutes=-30)

    await planner.handle_breach(breach(None), "rollback.breach.production.checkout")

    [plan] = await plans(db)
    assert plan.from_version == "v2"
    assert plan.to_version == "v1"


# Outcomes.


async def test_outcome_finishes_plan_once(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    await planner.handle_breach(breach("v2"), "rollback.breach.production.checkout")
    plan_id = publisher.of(PlanCreated)[0].plan_id

    await finish(planner, plan_id, "failed")
    await finish(planner, plan_id, "completed")

    [plan] = await plans(db)
    assert plan.status == "failed"
    assert plan.finished_at == clock()


async def test_completed_rollback_moves_current(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    await planner.handle_breach(breach("v2"), "rollback.breach.production.checkout")
    await finish(planner, publisher.of(PlanCreated)[0].plan_id)

    with pytest.raises(RollbackRejected) as caught:
        await planner.create_manual_plan(ManualRollback(ENV, SVC, "v1"), "alice")
    assert "current version" in str(caught.value)


async def test_outcome_of_unknown_plan_ignored(planner, db):
    await planner.apply_outcome(
        PlanFinished(
            plan_id=uuid4(),
            environment=ENV,
            service=SVC,
            from_version="v2",
            to_version="v1",
            trigger="manual",
            trigger_type="manual",
            outcome="completed",
            started_at=None,
            finished_at=T10,
            duration_ms=None,
        ),
        "rollback.outcome.production.checkout",
    )
    assert await plans(db) == []


# Manual rollbacks.


async def test_manual_plan_lifecycle(planner, publisher, db):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))

    plan = await planner.create_manual_plan(
        ManualRollback(ENV, SVC, "v1", from_version="v3", reason="slow checkout"), "alice"
    )
    assert plan.status == "pending"
    [created] = publisher.of(PlanCreated)
    assert created.trigger_type == "manual"
    assert created.trigger == "manual"
    assert created.actor == "alice"
    assert created.reason == "slow checkout"
    assert publisher.of(ExecutePlan) == []

    plan = await planner.execute_plan(UUID(plan.id), "bob")
    assert plan.status == "in_progress"
    [command] = publisher.of(ExecutePlan)
    assert command.actor == "bob"
    assert command.plan.plan_id == UUID(plan.id)
    with pytest.raises(PlanConflict):
        await planner.execute_plan(UUID(plan.id), "bob")

    await planner.cancel_plan(UUID(plan.id), "carol", "wrong target")
    await planner.cancel_plan(UUID(plan.id), "carol", "wrong target")
    [cancel] = publisher.of(CancelPlan)
    assert cancel.reason == "wrong target"
    assert [s for s, e in publisher.events if isinstance(e, CancelPlan)] == [CANCEL_SUBJECT]

    await finish(planner, UUID(plan.id), "cancelled")
    assert (await planner.get_plan(UUID(plan.id))).status == "cancelled"
    with pytest.raises(PlanConflict):
        await planner.cancel_plan(UUID(plan.id), "carol")


async def test_manual_plan_rejections(planner, db):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
    cases = [
        (ManualRollback(ENV, SVC, "v3"), "targetVersion", 409),
        (ManualRollback(ENV, SVC, "v9"), "targetVersion", 422),
        (ManualRollback(ENV, SVC, "v1", from_version="v2"), "fromVersion", 409),
        (ManualRollback(ENV, "billing", "v1"), "fromVersion", 422),
    ]
    for request, field, status in cases:
        with pytest.raises(RollbackRejected) as caught:
            await planner.create_manual_plan(request, "alice")
        assert caught.value.field == field, request
        assert caught.value.status_code == status, request
    assert await plans(db) == []


async def test_manual_force_bad_target(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
    await planner.handle_breach(breach("v3"), "rollback.breach.production.checkout")
    await finish(planner, publisher.of(PlanCreated)[0].plan_id)
    clock.set(10, 30)
    await deploy(planner, "v4")

    with pytest.raises(RollbackRejected) as caught:
        await planner.create_manual_plan(ManualRollback(ENV, SVC, "v3"), "alice")
    assert caught.value.field == "targetVersion"
    with pytest.raises(RollbackRejected) as caught:
        await planner.create_manual_plan(ManualRollback(ENV, SVC, "v3", force=True), "alice")
    assert caught.value.field == "reason"

    plan = await planner.create_manual_plan(
        ManualRollback(ENV, SVC, "v3", force=True, reason="v3 fixed by a config change"), "alice"
    )
    assert plan.forced is True
    assert publisher.of(PlanCreated)[-1].forced is True


async def test_manual_plan_blocked_by_active(planner, publisher):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    await planner.handle_breach(breach("v2"), "rollback.breach.production.checkout")

    with pytest.raises(PlanConflict) as caught:
        await planner.create_manual_plan(ManualRollback(ENV, SVC, "v1"), "alice")
    assert "in_progress" in str(caught.value)


async def test_pending_manual_plan_blocks_breach(planner, publisher):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    plan = await planner.create_manual_plan(ManualRollback(ENV, SVC, "v1"), "alice")

    await planner.handle_breach(breach("v2"), "rollback.breach.production.checkout")

    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "in_progress"
    assert str(suppressed.plan_id) == plan.id


async def test_unknown_plan_not_found(planner):
    with pytest.raises(PlanNotFound):
        await planner.execute_plan(uuid4(), "alice")
    with pytest.raises(PlanNotFound):
        await planner.cancel_plan(uuid4(), "alice")


async def test_outbox_relay_publishes_left_behind(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    publisher.failures_left = 1

    plan = await planner.create_manual_plan(ManualRollback(ENV, SVC, "v1"), "alice")

    assert publisher.events == []
    assert await planner.publish_outbox(created_before=clock() - timedelta(seconds=5)) == 0
    clock.set(10, 1)
    assert await planner.publish_outbox(created_before=clock() - timedelta(seconds=5)) == 1
    [created] = publisher.of(PlanCreated)
    assert str(created.plan_id) == plan.id


# Breaches deferred by a cooldown.


async def roll_back_v3_then_deploy_v4(planner: Planner, publisher, clock: FakeClock) -> None:
    """Roll v3 back to v2 at 10:00 (cooldown until 10:05), then deploy v4 at 10:02."""
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
    await planner.handle_breach(breach("v3"), "rollback.breach.production.checkout")
    clock.set(10, 0, 30)
    await finish(planner, publisher.of(PlanCreated)[0].plan_id)
    clock.set(10, 2)
    await deploy(planner, "v4")


async def test_cooldown_breach_rechecked_later(planner, publisher, db, clock):
    await roll_back_v3_then_deploy_v4(planner, publisher, clock)
    clock.set(10, 3)
    original = breach("v4")
    await planner.handle_breach(original, "rollback.breach.production.checkout")

    [suppressed] = publisher.of(BreachSuppressed)
    assert suppressed.reason == "cooldown"
    assert suppressed.needs_manual_action is False
    assert "re-checked at 2026-12-04T10:05:00+00:00" in suppressed.detail

    clock.set(10, 4)
    assert await planner.recheck_deferred() == 0
    assert len(publisher.of(PlanCreated)) == 1

    clock.set(10, 5)
    assert await planner.recheck_deferred() == 1
    created = publisher.of(PlanCreated)[-1]
    assert (created.from_version, created.to_version) == ("v4", "v2")
    assert created.trigger_type == "automatic"
    assert created.breach is not None
    assert created.breach.event_id == derived_id(original.event_id, "deferred")
    assert created.breach.detected_at == clock()
    assert publisher.of(ExecutePlan)[-1].plan == created

    # The deferred breach is re-decided once.
    clock.set(10, 6)
    assert await planner.recheck_deferred() == 0
    assert len(publisher.of(PlanCreated)) == 2
    async with db.sessions() as session:
        row = await session.scalar(select(Suppression).where(Suppression.reason == "cooldown"))
    assert row.rechecked_at == T10.replace(minute=5)
    assert row.recheck_outcome == "plan"


async def test_redelivered_breach_deferred_once(planner, publisher, db, clock):
    await roll_back_v3_then_deploy_v4(planner, publisher, clock)
    clock.set(10, 3)
    original = breach("v4")
    await planner.handle_breach(original, "rollback.breach.production.checkout")
    await planner.handle_breach(original, "rollback.breach.production.checkout")

    clock.set(10, 5)
    assert await planner.recheck_deferred() == 1
    await planner.handle_breach(original, "rollback.breach.production.checkout")

    assert len(publisher.of(PlanCreated)) == 2
    assert await count(db, Suppression) == 1


async def test_deferred_breach_dropped_when_replaced(planner, publisher, db, clock, caplog):
    await roll_back_v3_then_deploy_v4(planner, publisher, clock)
    clock.set(10, 3)
    await planner.handle_breach(breach("v4"), "rollback.breach.production.checkout")
    clock.set(10, 4)
    await deploy(planner, "v5")

    clock.set(10, 5)
    with caplog.at_level(logging.INFO, logger="services.planner.planning"):
        assert await planner.recheck_deferred() == 1

    assert len(publisher.of(PlanCreated)) == 1
    assert "v4 is no longer current" in caplog.text
    async with db.sessions() as session:
        row = await session.scalar(select(Suppression).where(Suppression.reason == "cooldown"))
    assert row.recheck_outcome == "dropped"
    clock.set(10, 6)
    assert await planner.recheck_deferred() == 0


async def test_deferred_breach_waits_for_active_plan(planner, publisher, db, clock):
    await roll_back_v3_then_deploy_v4(planner, publisher, clock)
    clock.set(10, 3)
    await planner.handle_breach(breach("v4"), "rollback.breach.production.checkout")
    clock.set(10, 4)
    manual = await planner.create_manual_plan(ManualRollback(ENV, SVC, "v2"), "alice")

    clock.set(10, 5)
    assert await planner.recheck_deferred() == 0
    assert len(publisher.of(PlanCreated)) == 2

    await planner.cancel_plan(UUID(manual.id), "alice", "wrong plan")
    await finish(planner, UUID(manual.id), "cancelled")
    clock.set(10, 6)
    assert await planner.recheck_deferred() == 1
    created = publisher.of(PlanCreated)[-1]
    assert created.trigger_type == "automatic"
    assert (created.from_version, created.to_version) == ("v4", "v2")


async def test_deferred_breach_meets_loop_guard(db, publisher, clock):
    planner = Planner(db, publisher, PlannerSettings(loop_guard_max_per_hour=1), clock=clock)
    await roll_back_v3_then_deploy_v4(planner, publisher, clock)
    clock.set(10, 3)
    await planner.handle_breach(breach("v4"), "rollback.breach.production.checkout")

    clock.set(10, 5)
    assert await planner.recheck_deferred() == 1

    assert len(publisher.of(PlanCreated)) == 1
    cooldown, guarded = publisher.of(BreachSuppressed)
    assert cooldown.reason == "cooldown"
    assert guarded.reason == "loop_guard"
    assert guarded.needs_manual_action is True
    clock.set(10, 11)
    assert await planner.recheck_deferred() == 0
    assert len(publisher.of(BreachSuppressed)) == 2


async def test_replicas_recheck_deferred_once(db, database_url, publisher, clock, monkeypatch):
    first = Planner(db, publisher, PlannerSettings(), clock=clock)
    await roll_back_v3_then_deploy_v4(first, publisher, clock)
    clock.set(10, 3)
    await first.handle_breach(breach("v4"), "rollback.breach.production.checkout")
    other_db = open_database(database_url)
    second = Planner(other_db, publisher, PlannerSettings(), clock=clock)
    clock.set(10, 5)

    # Both replicas list the due breach before either re-checks it.
    both_listed = asyncio.Barrier(2)
    list_due = repository.due_deferred

    async def list_then_wait(*args, **kwargs):
        due = await list_due(*args, **kwargs)
        await both_listed.wait()
        return due

    monkeypatch.setattr(repository, "due_deferred", list_then_wait)
    settled = await asyncio.gather(first.recheck_deferred(), second.recheck_deferred())
    await other_db.close()

    assert sorted(settled) == [0, 1]
    assert len(await plans(db)) == 2
    assert len(publisher.of(PlanCreated)) == 2


async def test_invalid_deferred_breach_settled(planner, publisher, db, clock, caplog):
    await roll_back_v3_then_deploy_v4(planner, publisher, clock)
    clock.set(10, 3)
    await planner.handle_breach(breach("v4"), "rollback.breach.production.checkout")
    async with db.sessions() as session, session.begin():
        row = await session.scalar(select(Suppression).where(Suppression.reason == "cooldown"))
        row.breach_json = '{"trigger": "error_rate"}'

    clock.set(10, 5)
    with caplog.at_level(logging.WARNING, logger="services.planner.planning"):
        assert await planner.recheck_deferred() == 1

    assert "stored breach is invalid" in caplog.text
    assert len(publisher.of(PlanCreated)) == 1
    async with db.sessions() as session:
        row = await session.scalar(select(Suppression).where(Suppression.reason == "cooldown"))
    assert row.recheck_outcome == "invalid"
    assert await planner.recheck_deferred() == 0


async def test_background_loop_rechecks_on_start(planner, publisher, db, clock):
    await roll_back_v3_then_deploy_v4(planner, publisher, clock)
    clock.set(10, 3)
    await planner.handle_breach(breach("v4"), "rollback.breach.production.checkout")
    clock.set(10, 5)

    # An interval far longer than the test: only the pass at start can create the plan.
    loop = BackgroundLoop(planner, interval=600.0)
    await loop.start()
    try:
        for _ in range(200):
            if len(publisher.of(PlanCreated)) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await loop.stop()

    assert [(p.from_version, p.to_version) for p in publisher.of(PlanCreated)] == [
        ("v3", "v2"),
        ("v4", "v2"),
    ]


# Bad marks from manual rollbacks.


async def test_manual_rollback_marks_from_bad(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    plan = await planner.create_manual_plan(ManualRollback(ENV, SVC, "v1"), "alice")
    await planner.execute_plan(UUID(plan.id), "bob")
    await finish(planner, UUID(plan.id))

    async with db.sessions() as session:
        mark = await session.get(BadVersion, (ENV, SVC, "v2"))
    assert mark is not None
    assert mark.plan_id == plan.id
    assert mark.reason == "manual rollback by alice"

    # An automatic rollback from a later version never goes forward onto v2.
    clock.set(10, 30)
    await deploy(planner, "v3")
    await planner.handle_breach(breach("v3"), "rollback.breach.production.checkout")
    created = publisher.of(PlanCreated)[-1]
    assert (created.from_version, created.to_version) == ("v3", "v1")


async def test_manual_rollback_forced_onto_marked(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    plan = await planner.create_manual_plan(ManualRollback(ENV, SVC, "v1"), "alice")
    await planner.execute_plan(UUID(plan.id), "alice")
    await finish(planner, UUID(plan.id))
    clock.set(10, 30)
    await deploy(planner, "v3")

    with pytest.raises(RollbackRejected) as caught:
        await planner.create_manual_plan(ManualRollback(ENV, SVC, "v2"), "alice")
    assert "marked bad" in str(caught.value)
    forced = await planner.create_manual_plan(
        ManualRollback(ENV, SVC, "v2", force=True, reason="v2 fixed by a config change"), "alice"
    )
    assert forced.forced is True


async def test_manual_rollback_keeps_first_mark(planner, publisher, db, clock):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
    await planner.handle_breach(breach("v3"), "rollback.breach.production.checkout")
    automatic = publisher.of(PlanCreated)[0]
    await finish(planner, automatic.plan_id)
    clock.set(10, 30)
    await deploy(planner, "v3")
    plan = await planner.create_manual_plan(ManualRollback(ENV, SVC, "v2"), "alice")
    await planner.execute_plan(UUID(plan.id), "alice")
    await finish(planner, UUID(plan.id))

    async with db.sessions() as session:
        marks = list(await session.scalars(select(BadVersion)))
    assert [(m.version, m.plan_id) for m in marks] == [("v3", str(automatic.plan_id))]
    assert marks[0].reason == "automatic rollback after a breach of trigger error_rate"


async def test_unfinished_manual_rollback_marks_nothing(planner, db):
    await deploy_history(planner, ("v1", "succeeded"), ("v2", "succeeded"))
    for outcome in ("cancelled", "failed"):
        plan = await planner.create_manual_plan(ManualRollback(ENV, SVC, "v1"), "alice")
        await planner.execute_plan(UUID(plan.id), "alice")
        await finish(planner, UUID(plan.id), outcome)

    assert await count(db, BadVersion) == 0


# Log wording.


async def test_log_lines_read_plainly(planner, publisher, clock, caplog):
    with caplog.at_level(logging.INFO, logger="services.planner"):
        await planner.handle_breach(breach(None, "alert"), "rollback.breach.production.checkout")
        clock.set(10, 1)
        await planner.handle_breach(breach(None, "alert"), "rollback.breach.production.checkout")
        clock.set(10, 5)
        await planner.recheck_deferred()

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) >= 3
    for message in messages:
        assert " a alert" not in message
        assert "None" not in message
