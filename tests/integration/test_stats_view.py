"""The stats service against a real nats-server and real databases.

Events are published straight onto the bus as the other services would publish them, so these
tests do not depend on the planner, executor or notifier.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import nats
import pytest
from sqlalchemy import func, select

from services.runner import Runtime
from services.stats.models import StatsInbox
from shared.bus import publish
from shared.contracts import (
    STEP_NAMES,
    BreachDetected,
    BreachSuppressed,
    CancelPlan,
    ExecutePlan,
    IncidentReportStored,
    NotificationFailed,
    PlanCreated,
    PlanFinished,
    StepChanged,
)
from shared.settings import Settings
from tests.conftest import OPERATOR, PRODUCER, VIEWER

pytestmark = pytest.mark.nats

BASE_TIME = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
STATS = "/api/admin/rollback/stats"
EMPTY_STATS = {
    "total": 0,
    "pending": 0,
    "inProgress": 0,
    "completed": 0,
    "failed": 0,
    "cancelled": 0,
    "automaticCount": 0,
    "manualCount": 0,
    "avgDurationMs": None,
    "successRate": None,
    "triggerBreakdown": {},
}


def strict_json(text: str) -> object:
    """Parse JSON that must not contain NaN or Infinity."""

    def reject(constant: str) -> None:
        raise AssertionError(f"JSON contains {constant}")

    return json.loads(text, parse_constant=reject)


class Bus:
    """Publishes rollback events the way the other services do, and counts them."""

    def __init__(self, runtime: Runtime) -> None:
        self.broker = runtime.context.broker
        self.published = 0

    async def send(self, subject: str, event) -> None:
        await publish(self.broker, subject, event)
        self.published += 1

    async def created(
        self,
        *,
        environment: str = "production",
        service: str = "checkout",
        trigger: str = "error_rate",
        trigger_type: str = "automatic",
        created_at: datetime = BASE_TIME,
        with_breach: bool = True,
        plan_id: UUID | None = None,
        publish_it: bool = True,
    ) -> PlanCreated:
        breach = None
        if with_breach and trigger_type == "automatic":
            breach = BreachDetected(
                environment=environment,
                service=service,
                version="v2.0.0",
                trigger=trigger if trigger != "manual" else "error_rate",
                measured=0.25,
                threshold=0.1,
                samples=40,
                detected_at=created_at - timedelta(seconds=5),
            )
        plan = PlanCreated(
            plan_id=plan_id or uuid4(),
            environment=environment,
            service=service,
            from_version="v2.0.0",
            to_version="v1.9.0",
            trigger=trigger,
            trigger_type=trigger_type,
            actor="system" if trigger_type == "automatic" else "alice",
            reason="error rate 0.25 over 0.10" if trigger_type == "automatic" else "by hand",
            created_at=created_at,
            breach=breach,
        )
        if publish_it:
            await self.send(f"rollback.plan.{environment}.{service}", plan)
        return plan

    async def execute(self, plan: PlanCreated) -> None:
        await self.send("rollback.execute", ExecutePlan(plan=plan, actor=plan.actor))

    async def step(
        self, plan: PlanCreated, name: str, status: str, started: datetime, ms: float | None = None,
        attempt: int = 1, error: str | None = None,
    ) -> None:
        finished = started + timedelta(milliseconds=ms) if ms is not None else None
        event = StepChanged(
            plan_id=plan.plan_id, environment=plan.environment, service=plan.service, step=name,
            status=status, attempt=attempt, started_at=started, finished_at=finished,
            duration_ms=ms, error=error,
        )
        await self.send(f"rollback.step.{plan.environment}.{plan.service}", event)

    async def finished(
        self, plan: PlanCreated, outcome: str, started: datetime | None, seconds: float,
        failed_step: str | None = None,
    ) -> PlanFinished:
        finished_at = (started or plan.created_at) + timedelta(seconds=seconds)
        event = PlanFinished(
            plan_id=plan.plan_id, environment=plan.environment, service=plan.service,
            from_version=plan.from_version, to_version=plan.to_version, trigger=plan.trigger,
            trigger_type=plan.trigger_type, outcome=outcome, started_at=started,
            finished_at=finished_at, duration_ms=seconds * 1000 if started else None,
            failed_step=failed_step, error="switch failed" if failed_step else None,
        )
        await self.send(f"rollback.outcome.{plan.environment}.{plan.service}", event)
        return event

    async def run(self, plan: PlanCreated, outcome: str = "completed", seconds: float = 8.0) -> None:
        """Publish a whole plan: created, executed, every step, outcome."""
        await self.send(f"rollback.plan.{plan.environment}.{plan.service}", plan)
        await self.execute(plan)
        started = plan.created_at + timedelta(seconds=1)
        at = started
        for name in STEP_NAMES:
            await self.step(plan, name, "running", at)
            await self.step(plan, name, "succeeded", at, ms=500)
            at += timedelta(milliseconds=500)
        await self.finished(plan, outcome, started, seconds)


async def wait_applied(runtime: Runtime, count: int, timeout: float = 20.0) -> None:
    """Wait until the stats consumer has applied ``count`` distinct events."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = -1
    while loop.time() < deadline:
        async with runtime.db.sessions() as session:
            seen = await session.scalar(select(func.count()).select_from(StatsInbox))
        if seen >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the stats consumer applied {seen} of {count} events within {timeout} s")


@pytest.fixture
async def stats_runtime(
    nats_server, make_settings: Callable[..., Settings], sqlite_url: str
) -> AsyncIterator[Runtime]:
    settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url)
    async with Runtime(settings, ["stats"]) as runtime:
        yield runtime


@pytest.fixture
async def stats_runtime_any_db(
    nats_server, make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Runtime]:
    settings = make_settings(nats_url=nats_server.url, database_url=database_url)
    async with Runtime(settings, ["stats"]) as runtime:
        yield runtime


def client(runtime: Runtime, headers: dict[str, str] = VIEWER) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, headers=headers, timeout=30)


async def test_no_rollbacks_gives_zeros_and_nulls(stats_runtime):
    async with client(stats_runtime) as http:
        response = await http.get(STATS)
    assert response.status_code == 200
    assert strict_json(response.text) == EMPTY_STATS


async def test_only_open_plans_have_null_success_rate(stats_runtime):
    bus = Bus(stats_runtime)
    await bus.created()
    running = await bus.created(trigger="latency")
    await bus.execute(running)
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        stats = strict_json((await http.get(STATS)).text)
    assert stats["total"] == 2
    assert stats["pending"] == 1
    assert stats["inProgress"] == 1
    assert stats["successRate"] is None
    assert stats["avgDurationMs"] is None
    assert stats["automaticCount"] == 2


async def test_stats_count_outcomes_and_triggers(stats_runtime_any_db):
    runtime = stats_runtime_any_db
    bus = Bus(runtime)
    for index, (trigger, outcome, seconds) in enumerate(
        [("error_rate", "completed", 8), ("error_rate", "completed", 10), ("latency", "failed", 6),
         ("manual", "completed", 4), ("manual", "cancelled", 2)]
    ):
        kind = "manual" if trigger == "manual" else "automatic"
        plan = await bus.created(trigger=trigger, trigger_type=kind, publish_it=False,
                                 created_at=BASE_TIME + timedelta(minutes=index))
        await bus.run(plan, outcome, seconds)
    await wait_applied(runtime, bus.published)
    async with client(runtime) as http:
        stats = strict_json((await http.get(STATS)).text)
    assert stats == {
        "total": 5, "pending": 0, "inProgress": 0, "completed": 3, "failed": 1, "cancelled": 1,
        "automaticCount": 3, "manualCount": 2, "avgDurationMs": 6000.0, "successRate": 0.75,
        "triggerBreakdown": {"error_rate": 2, "latency": 1, "manual": 2},
    }


async def test_plan_detail_has_steps_breach_and_report(stats_runtime_any_db):
    runtime = stats_runtime_any_db
    bus = Bus(runtime)
    plan = await bus.created(publish_it=False)
    await bus.run(plan, "completed", 8)
    await bus.send(
        "rollback.report.production.checkout",
        IncidentReportStored(plan_id=plan.plan_id, environment="production", service="checkout",
                             markdown="# Incident\n\nRolled back checkout."),
    )
    await wait_applied(runtime, bus.published)
    async with client(runtime) as http:
        detail = strict_json((await http.get(f"/api/admin/rollbacks/{plan.plan_id}")).text)
        report = await http.get(f"/api/admin/rollbacks/{plan.plan_id}/incident-report")
    assert detail["id"] == str(plan.plan_id)
    assert detail["status"] == "completed"
    assert detail["fromVersion"] == "v2.0.0"
    assert detail["toVersion"] == "v1.9.0"
    assert detail["triggerType"] == "automatic"
    assert detail["durationMs"] == 8000.0
    assert detail["createdAt"] == "2026-11-20T09:00:00Z"
    assert detail["breach"]["trigger"] == "error_rate"
    assert detail["breach"]["measured"] == 0.25
    assert detail["breach"]["windowSeconds"] == 0.0
    assert detail["breach"]["detectedAt"] == "2026-11-20T08:59:55Z"
    assert [step["name"] for step in detail["steps"]] == list(STEP_NAMES)
    assert {step["status"] for step in detail["steps"]} == {"succeeded"}
    assert {step["durationMs"] for step in detail["steps"]} == {500.0}
    assert detail["reportAvailable"] is True
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/markdown")
    assert report.text.startswith("# Incident")


async def test_incident_report_missing_is_404(stats_runtime):
    bus = Bus(stats_runtime)
    plan = await bus.created()
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        pending = await http.get(f"/api/admin/rollbacks/{plan.plan_id}/incident-report")
        unknown = await http.get(f"/api/admin/rollbacks/{uuid4()}/incident-report")
        detail = await http.get(f"/api/admin/rollbacks/{uuid4()}")
    assert pending.status_code == 404
    assert "no incident report" in pending.json()["detail"]
    assert "status now: pending" in pending.json()["detail"]
    assert unknown.status_code == 404
    assert "not found" in unknown.json()["detail"]
    assert detail.status_code == 404


async def test_events_out_of_order_give_final_state(stats_runtime_any_db):
    runtime = stats_runtime_any_db
    bus = Bus(runtime)
    plan = await bus.created(publish_it=False)
    started = BASE_TIME + timedelta(seconds=1)
    # Outcome and a step first, then the creation and the execute command, then a late
    # "running" event of a step that already succeeded.
    await bus.step(plan, "switch_version", "succeeded", started, ms=5000)
    await bus.finished(plan, "completed", started, 9)
    await bus.send("rollback.plan.production.checkout", plan)
    await bus.execute(plan)
    await bus.step(plan, "switch_version", "running", started)
    await wait_applied(runtime, bus.published)
    async with client(runtime) as http:
        detail = (await http.get(f"/api/admin/rollbacks/{plan.plan_id}")).json()
        stats = (await http.get(STATS)).json()
    assert detail["status"] == "completed"
    assert detail["createdAt"] == "2026-11-20T09:00:00Z"
    assert detail["steps"][0]["status"] == "succeeded"
    assert detail["steps"][0]["durationMs"] == 5000.0
    assert stats["total"] == 1
    assert stats["completed"] == 1
    assert stats["inProgress"] == 0
    assert stats["avgDurationMs"] == 9000.0


async def test_step_before_plan_is_not_counted_yet(stats_runtime):
    bus = Bus(stats_runtime)
    plan = await bus.created(publish_it=False)
    await bus.step(plan, "validate_target", "running", BASE_TIME)
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        before = (await http.get(STATS)).json()
        listed = (await http.get("/api/admin/rollbacks")).json()
    await bus.send("rollback.plan.production.checkout", plan)
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        after = (await http.get(STATS)).json()
    assert before == EMPTY_STATS
    assert listed["items"][0]["status"] == "in_progress"
    assert listed["items"][0]["trigger"] is None
    assert after["total"] == 1
    assert after["inProgress"] == 1


async def test_repeated_event_is_applied_once(stats_runtime, nats_server):
    bus = Bus(stats_runtime)
    plan = await bus.created()
    # A second copy without Nats-Msg-Id, so JetStream stores it and the consumer receives it.
    connection = await nats.connect(nats_server.url)
    await connection.jetstream().publish(
        "rollback.plan.production.checkout", plan.model_dump_json().encode()
    )
    await connection.close()
    marker = await bus.created(trigger="latency")
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        stats = (await http.get(STATS)).json()
    assert marker.trigger == "latency"
    assert stats["total"] == 2
    assert stats["triggerBreakdown"] == {"error_rate": 1, "latency": 1}


async def test_plan_ending_before_start_is_left_out(stats_runtime):
    bus = Bus(stats_runtime)
    plan = await bus.created()
    await bus.send(
        "rollback.outcome.production.checkout",
        PlanFinished(
            plan_id=plan.plan_id, environment="production", service="checkout",
            from_version="v2.0.0", to_version="v1.9.0", trigger="error_rate",
            trigger_type="automatic", outcome="completed", started_at=BASE_TIME,
            finished_at=BASE_TIME - timedelta(seconds=3), duration_ms=None,
        ),
    )
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        stats = strict_json((await http.get(STATS)).text)
    assert stats["completed"] == 1
    assert stats["successRate"] == 1.0
    assert stats["avgDurationMs"] is None


async def test_filters_and_time_range(stats_runtime_any_db):
    runtime = stats_runtime_any_db
    bus = Bus(runtime)
    day = timedelta(days=1)
    cases = [
        ("production", "checkout", BASE_TIME - day, "completed"),
        ("production", "checkout", BASE_TIME, "failed"),
        ("production", "search", BASE_TIME + timedelta(hours=3), "completed"),
        ("staging", "checkout", BASE_TIME + day, "completed"),
        ("staging", "checkout", BASE_TIME + 2 * day, "cancelled"),
    ]
    for environment, service, created_at, outcome in cases:
        plan = await bus.created(environment=environment, service=service, created_at=created_at,
                                 publish_it=False)
        await bus.run(plan, outcome, 5)
    await wait_applied(runtime, bus.published)

    async def total(**params: str) -> int:
        async with client(runtime) as http:
            response = await http.get(STATS, params=params)
        assert response.status_code == 200, response.text
        return response.json()["total"]

    assert await total(environment="production") == 3
    assert await total(environment="production", service="checkout") == 2
    assert await total(service="checkout") == 4
    # Partial days at both edges: from 08:00 on the base day to 10:00 the day after.
    since = (BASE_TIME - timedelta(hours=1)).isoformat()
    until = (BASE_TIME + day + timedelta(hours=1)).isoformat()
    assert await total(since=since, until=until) == 3
    assert await total(since=since, until=until, environment="staging") == 1
    # Whole days only, then an open end, then an open start.
    assert await total(since="2026-11-20T00:00:00Z", until="2026-11-21T00:00:00Z") == 2
    assert await total(since="2026-11-21T09:00:00Z") == 2
    assert await total(until="2026-11-20T09:00:00Z") == 1
    # A range inside one day.
    assert await total(since="2026-11-20T09:30:00Z", until="2026-11-20T13:00:00Z") == 1


async def test_bad_filters_are_400(stats_runtime):
    async with client(stats_runtime) as http:
        bad_name = await http.get(STATS, params={"environment": "Prod/../x"})
        naive = await http.get(STATS, params={"since": "2026-11-20T09:00:00"})
        reversed_range = await http.get(
            STATS, params={"since": "2026-11-21T00:00:00Z", "until": "2026-11-20T00:00:00Z"}
        )
        bad_status = await http.get("/api/admin/rollbacks", params={"status": "done"})
    assert bad_name.status_code == 400
    assert bad_name.json()["field"] == "environment"
    assert naive.status_code == 400
    assert "time zone" in naive.json()["detail"]
    assert reversed_range.status_code == 400
    assert bad_status.status_code == 422


async def test_reads_need_viewer_role(stats_runtime):
    async with client(stats_runtime, headers={}) as http:
        anonymous = await http.get(STATS)
        wrong = await http.get(STATS, headers={"Authorization": "Bearer nope"})
        producer = await http.get("/api/admin/rollbacks", headers=PRODUCER)
        operator = await http.get(STATS, headers=OPERATOR)
        viewer_rebuild = await http.post(f"{STATS}/rebuild", headers=VIEWER)
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert producer.status_code == 403
    assert operator.status_code == 200
    assert viewer_rebuild.status_code == 403


async def test_list_filters_and_pages(stats_runtime):
    bus = Bus(stats_runtime)
    created = []
    for index in range(5):
        plan = await bus.created(
            service="checkout" if index % 2 == 0 else "search",
            created_at=BASE_TIME + timedelta(minutes=index),
        )
        created.append(plan)
    await bus.execute(created[4])
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        first = (await http.get("/api/admin/rollbacks", params={"limit": 2})).json()
        second = (await http.get("/api/admin/rollbacks", params={"limit": 2, "offset": 2})).json()
        search = (await http.get("/api/admin/rollbacks", params={"service": "search"})).json()
        running = (await http.get("/api/admin/rollbacks", params={"status": "in_progress"})).json()
        with_steps = (await http.get("/api/admin/rollbacks", params={"steps": "true"})).json()
    newest_first = [str(plan.plan_id) for plan in reversed(created)]
    assert first["total"] == 5
    assert [item["id"] for item in first["items"]] == newest_first[:2]
    assert [item["id"] for item in second["items"]] == newest_first[2:4]
    assert search["total"] == 2
    assert {item["service"] for item in search["items"]} == {"search"}
    assert [item["id"] for item in running["items"]] == [str(created[4].plan_id)]
    assert "steps" not in first["items"][0]
    assert with_steps["items"][0]["steps"] == []


async def test_invalid_event_is_dead_lettered(stats_runtime, nats_server):
    async with client(stats_runtime) as http:
        before = (await http.get("/metrics")).text
    bus = Bus(stats_runtime)
    plan = await bus.created(publish_it=False)
    body = {**plan.model_dump(mode="json"), "trigger": "gut_feeling"}
    mismatched = plan.model_dump(mode="json")
    connection = await nats.connect(nats_server.url)
    js = connection.jetstream()
    await js.publish("rollback.plan.production.checkout", json.dumps(body).encode())
    await js.publish("rollback.plan.staging.checkout", json.dumps(mismatched).encode())
    await js.publish("rollback.plan.production.checkout", b"not json")
    await connection.close()
    await bus.send("rollback.plan.production.checkout", plan)
    await wait_applied(stats_runtime, bus.published)
    invalid = ("travi_invalid_events_total", 'consumer="stats"')
    async with client(stats_runtime) as http:
        stats = (await http.get(STATS)).json()
        for _ in range(100):
            metrics = (await http.get("/metrics")).text
            if metric_value(metrics, *invalid) - metric_value(before, *invalid) >= 3:
                break
            await asyncio.sleep(0.05)
    dead = ("travi_dead_letters_total", 'consumer="stats"')
    assert stats["total"] == 1
    assert metric_value(metrics, *dead) - metric_value(before, *dead) == 3
    assert metric_value(metrics, *invalid) - metric_value(before, *invalid) == 3


def metric_value(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


async def test_metrics_count_rollback_events(stats_runtime):
    async with client(stats_runtime) as http:
        before = (await http.get("/metrics")).text
    bus = Bus(stats_runtime)
    plan = await bus.created(trigger="latency", publish_it=False)
    await bus.run(plan, "completed", 8)
    await bus.send(
        "rollback.suppressed.production.checkout",
        BreachSuppressed(environment="production", service="checkout", reason="cooldown",
                         breach=plan.breach),
    )
    await bus.send("rollback.breach.production.checkout", plan.breach)
    await bus.send(
        "rollback.notification.production.checkout",
        NotificationFailed(environment="production", service="checkout", plan_id=plan.plan_id,
                           channel="slack", source_event_id=uuid4(), error="HTTP 500"),
    )
    await bus.send("rollback.cancel", CancelPlan(plan=plan, actor="alice"))
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        after = (await http.get("/metrics")).text

    def grew(name: str, labels: str = "") -> float:
        return metric_value(after, name, labels) - metric_value(before, name, labels)

    assert grew("travi_rollbacks_total", 'outcome="completed",trigger="latency",trigger_type="automatic"') == 1
    assert grew("travi_rollback_duration_seconds_count", 'outcome="completed"') == 1
    assert grew("travi_rollback_duration_seconds_sum", 'outcome="completed"') == 8.0
    assert grew("travi_rollback_time_to_recovery_seconds_count", 'trigger="latency"') == 1
    # The breach was detected 5 s before the plan, which finished 9 s after its creation.
    assert grew("travi_rollback_time_to_recovery_seconds_sum", 'trigger="latency"') == 14.0
    assert grew("travi_breaches_suppressed_total", 'reason="cooldown"') == 1
    assert grew("travi_breaches_total", 'trigger="latency"') == 1
    assert grew("travi_notification_failures_total", 'channel="slack"') == 1


async def test_rebuild_equals_live_view(stats_runtime_any_db):
    runtime = stats_runtime_any_db
    bus = Bus(runtime)
    day = timedelta(days=1)
    for index in range(6):
        trigger = ("error_rate", "latency", "manual")[index % 3]
        plan = await bus.created(
            trigger=trigger, trigger_type="manual" if trigger == "manual" else "automatic",
            environment=("production", "staging")[index % 2], created_at=BASE_TIME + index * day / 3,
            publish_it=False,
        )
        await bus.run(plan, ("completed", "failed", "completed", "cancelled")[index % 4], 4 + index)
    open_plan = await bus.created(trigger="health_check")
    await bus.execute(open_plan)
    await bus.step(open_plan, "validate_target", "running", BASE_TIME)
    late = await bus.created(publish_it=False, created_at=BASE_TIME + day)
    await bus.step(late, "pause_traffic", "succeeded", BASE_TIME + day, ms=90)
    await bus.send("rollback.plan.production.checkout", late)
    await wait_applied(runtime, bus.published)

    queries = [{}, {"environment": "staging"}, {"since": "2026-11-20T12:00:00Z"},
               {"since": "2026-11-20T10:00:00Z", "until": "2026-11-21T15:00:00Z"}]

    async def snapshot() -> tuple[list, dict]:
        async with client(runtime) as http:
            stats = [(await http.get(STATS, params=query)).json() for query in queries]
            listed = (await http.get("/api/admin/rollbacks", params={"steps": "true", "limit": 100})).json()
        return stats, listed

    live = await snapshot()
    async with client(runtime, OPERATOR) as http:
        response = await http.post(f"{STATS}/rebuild")
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == bus.published
    replayed = await snapshot()
    assert live[0][0]["total"] == 8
    assert replayed[0] == live[0]
    assert replayed[1] == live[1]


async def test_rebuild_during_live_traffic(stats_runtime):
    runtime = stats_runtime
    bus = Bus(runtime)

    async def publish_plans(first: int, count: int) -> None:
        for index in range(first, first + count):
            plan = await bus.created(created_at=BASE_TIME + timedelta(minutes=index), publish_it=False)
            await bus.send(f"rollback.plan.{plan.environment}.{plan.service}", plan)
            await bus.finished(plan, ("completed", "failed")[index % 2], plan.created_at, 3 + index)

    await publish_plans(0, 10)
    await wait_applied(runtime, bus.published)
    async with client(runtime, OPERATOR) as http:
        rebuilding = asyncio.create_task(http.post(f"{STATS}/rebuild"))
        await publish_plans(10, 10)
        response = await rebuilding
    await wait_applied(runtime, bus.published)
    async with client(runtime) as http:
        live = (await http.get(STATS)).json()
    async with client(runtime, OPERATOR) as http:
        again = await http.post(f"{STATS}/rebuild")
    async with client(runtime) as http:
        replayed = (await http.get(STATS)).json()
    assert response.status_code == 200
    assert again.json()["applied"] == bus.published
    assert live["total"] == 20
    assert live["completed"] == 10
    assert replayed == live


@pytest.mark.postgres
async def test_two_replicas_share_the_events(nats_server, make_settings, postgres_url):
    settings = make_settings(nats_url=nats_server.url, database_url=postgres_url)
    async with Runtime(settings, ["stats"]) as first, Runtime(settings, ["stats"]) as second:
        bus = Bus(first)
        for index in range(15):
            plan = await bus.created(
                trigger=("error_rate", "latency", "timeout")[index % 3],
                created_at=BASE_TIME + timedelta(hours=index), publish_it=False,
            )
            await bus.run(plan, "completed", 2 + index % 4)
        await wait_applied(first, bus.published)
        async with client(second) as http:
            live = (await http.get(STATS)).json()
            listed = (await http.get("/api/admin/rollbacks", params={"steps": "true"})).json()
        async with client(first, OPERATOR) as http:
            await http.post(f"{STATS}/rebuild")
        async with client(second) as http:
            replayed = (await http.get(STATS)).json()
    assert live["total"] == 15
    assert live["completed"] == 15
    assert live["triggerBreakdown"] == {"error_rate": 5, "latency": 5, "timeout": 5}
    assert live["avgDurationMs"] == 3400.0
    assert {len(item["steps"]) for item in listed["items"]} == {len(STEP_NAMES)}
    assert replayed == live


async def test_signals_list_why_nothing_ran(stats_runtime):
    bus = Bus(stats_runtime)
    plan = await bus.created(publish_it=False)
    breach = plan.breach.model_copy(update={"occurred_at": BASE_TIME})
    await bus.send("rollback.breach.production.checkout", breach)
    await bus.send(
        "rollback.suppressed.production.checkout",
        BreachSuppressed(
            environment="production",
            service="checkout",
            reason="cooldown",
            detail="cooldown of error_rate until 10:00",
            breach=breach,
            occurred_at=BASE_TIME + timedelta(seconds=1),
        ),
    )
    await bus.send(
        "rollback.suppressed.production.search",
        BreachSuppressed(
            environment="production",
            service="search",
            reason="no_target",
            breach=breach.model_copy(update={"service": "search"}),
            occurred_at=BASE_TIME + timedelta(seconds=2),
        ),
    )
    await wait_applied(stats_runtime, bus.published)
    async with client(stats_runtime) as http:
        everything = (await http.get("/api/admin/signals")).json()
        suppressed = (await http.get("/api/admin/signals?kind=suppressed&service=checkout")).json()
        paged = (await http.get("/api/admin/signals?limit=1&offset=1")).json()
        bad_kind = await http.get("/api/admin/signals?kind=nonsense")
        bad_since = await http.get("/api/admin/signals?since=2026-11-20T09:00:00")
    async with client(stats_runtime, headers={}) as http:
        anonymous = await http.get("/api/admin/signals")

    assert everything["total"] == 3
    assert [item["kind"] for item in everything["items"]] == ["suppressed", "suppressed", "breach"]
    assert suppressed["total"] == 1
    assert suppressed["items"][0]["label"] == "cooldown"
    assert suppressed["items"][0]["detail"] == "cooldown of error_rate until 10:00"
    assert suppressed["items"][0]["occurredAt"] == "2026-11-20T09:00:01Z"
    assert paged["total"] == 3
    assert [item["label"] for item in paged["items"]] == ["cooldown"]
    assert bad_kind.status_code == 422
    assert bad_since.status_code == 400
    assert "time zone" in bad_since.json()["detail"]
    assert anonymous.status_code == 401
