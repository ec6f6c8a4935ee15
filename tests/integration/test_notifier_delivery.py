"""The notifier against a real nats-server, a real database and local fake HTTP servers.

Events are published onto the bus as the planner and executor publish them. Slack, Statuspage
and the webhook are the fakes in ``tests/fakes``, listening on 127.0.0.1; their recorded
receive times are the evidence for waits, never the test's own clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import nats
import pytest
from sqlalchemy import func, select

from services.notifier.models import Delivery, InboxEntry
from services.notifier.repository import DeliveryStore
from services.runner import Runtime
from shared.bus import EXECUTE_SUBJECT, HEADER_ERROR, ROLLBACK_STREAM, publish
from shared.contracts import Contract, IncidentReportStored, NotificationFailed
from shared.embedded import EmbeddedNats
from shared.names import subject
from shared.settings import Settings
from tests.conftest import VIEWER
from tests.fakes import events
from tests.fakes.slack import FakeSlack, Reply
from tests.fakes.statuspage import FakeStatuspage
from tests.fakes.webhook import FakeWebhook

pytestmark = pytest.mark.nats

STEPS = ("validate_target", "pause_traffic", "drain_connections", "switch_version",
         "verify_health", "resume_traffic", "cleanup", "notify")
FAST = {"poll_seconds": 0.1, "lease_seconds": 5, "backoff_seconds": 0.05,
        "shutdown_grace_seconds": 1}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def statuspage() -> Iterator[FakeStatuspage]:
    with FakeStatuspage() as server:
        yield server


@pytest.fixture
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """SQLite, or PostgreSQL when a test is parametrized with ``postgres``."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_url")
    return sqlite_url


BOTH_DATABASES = pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def notifier_settings(
    make_settings: Callable[..., Settings], nats_server: EmbeddedNats, db_url: str
) -> Callable[..., Settings]:
    """Settings for the notifier alone, on the test's nats-server and database."""

    def build(**notifier: Any) -> Settings:
        return make_settings(
            nats_url=nats_server.url, database_url=db_url, notifier={**FAST, **notifier}
        )

    return build


class Notifiers:
    """Starts the notifier service alone; whatever is still running is stopped at the end."""

    def __init__(self) -> None:
        self.running: list[Runtime] = []

    async def start(self, settings: Settings) -> Runtime:
        runtime = Runtime(settings, ["notifier"])
        await runtime.start()
        self.running.append(runtime)
        return runtime

    async def stop(self, runtime: Runtime) -> None:
        self.running.remove(runtime)
        await runtime.stop()


@pytest.fixture
async def notifiers() -> AsyncIterator[Notifiers]:
    manager = Notifiers()
    yield manager
    for runtime in reversed(manager.running):
        await runtime.stop()


async def wait_until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    """Poll ``condition`` (sync or async) until it is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met within the timeout")
        await asyncio.sleep(0.05)


async def send(runtime: Runtime, event: Contract) -> None:
    """Publish ``event`` on the subject its publisher would use."""
    if type(event).__name__ == "ExecutePlan":
        topic = EXECUTE_SUBJECT
    else:
        kind = {
            "PlanCreated": "rollback.plan",
            "StepChanged": "rollback.step",
            "PlanFinished": "rollback.outcome",
            "BreachSuppressed": "rollback.suppressed",
            "EscalationRaised": "rollback.escalation",
        }[type(event).__name__]
        topic = subject(kind, event.environment, event.service)
    await publish(runtime.context.broker, topic, event)


async def send_without_message_id(runtime: Runtime, event: Contract) -> None:
    """Publish with no ``Nats-Msg-Id``, so that JetStream stores every copy."""
    js = runtime.context.broker.connection.jetstream()
    topic = subject("rollback.outcome", event.environment, event.service)
    await js.publish(topic, event.model_dump_json().encode(), stream=ROLLBACK_STREAM.name)


async def read_stream(url: str, topic: str, count: int, timeout: float = 5.0) -> list[Any]:
    """Fetch up to ``count`` messages of ``topic`` from the rollback stream."""
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        subscription = await js.pull_subscribe(topic, stream=ROLLBACK_STREAM.name)
        try:
            return await subscription.fetch(count, timeout=timeout)
        except nats.errors.TimeoutError:
            return []
    finally:
        await connection.close()


async def deliveries(runtime: Runtime, channel: str) -> list[Delivery]:
    async with runtime.db.sessions() as session:
        rows = await session.scalars(
            select(Delivery).where(Delivery.channel == channel).order_by(Delivery.id)
        )
        return list(rows)


async def handled_events(runtime: Runtime) -> int:
    async with runtime.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(InboxEntry))


def texts_starting(server: FakeSlack, prefix: str, status: int | None = None) -> list:
    return [item for item in server.received(status) if item.json()["text"].startswith(prefix)]


async def test_rate_limited_slack_sends_once_after_waits(slack, notifier_settings, notifiers):
    slack.script(
        Reply(429, "rate_limited", {"Retry-After": "2"}),
        Reply(429, "rate_limited", {"Retry-After": "2"}),
    )
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url,
        slack_events=["started", "step", "completed"],
        slack_min_interval_seconds=1.0,
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    await send(runtime, events.execute(created))
    await wait_until(lambda: len(slack.received()) >= 1)
    for index in range(30):
        name = STEPS[index % len(STEPS)]
        status = "running" if index % 2 == 0 else "succeeded"
        attempt = 1 + index // 16
        await send(runtime, events.step(created, name, status, at=3 + index, attempt=attempt))
    await wait_until(lambda: len(texts_starting(slack, "Rollback started", 200)) == 1)
    await wait_until(lambda: handled_events(runtime))
    await wait_until(lambda: _all_sent(runtime, "slack"), timeout=30)

    started = texts_starting(slack, "Rollback started")
    assert [item.status for item in started] == [429, 429, 200]
    assert started[1].received_at - started[0].received_at >= 2.0
    assert started[2].received_at - started[1].received_at >= 2.0
    progress = texts_starting(slack, "Rollback in progress")
    assert 1 <= len(progress) <= 3, f"{len(progress)} progress posts for 30 step events"
    times = [item.received_at for item in slack.received()]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert min(gaps) >= 0.95, f"requests closer than the 1 s minimum interval: {gaps}"
    last = progress[-1].json()["text"]
    assert "notify" in last


async def _all_sent(runtime: Runtime, channel: str) -> bool:
    rows = await deliveries(runtime, channel)
    return bool(rows) and all(row.status != "pending" for row in rows)


@BOTH_DATABASES
async def test_same_outcome_three_times_sent_once(
    slack, statuspage, notifier_settings, notifiers
):
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url,
        slack_min_interval_seconds=0.1,
        statuspage_api_url=statuspage.api_url,
        statuspage_page_id=statuspage.page_id,
        statuspage_api_key=statuspage.api_key,
        statuspage_components={"checkout": "comp-checkout"},
        statuspage_min_interval_seconds=0.1,
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    await send(runtime, events.execute(created))
    await wait_until(lambda: len(statuspage.incidents) == 1)
    outcome = events.finished(created)
    await send_without_message_id(runtime, outcome)
    await send_without_message_id(runtime, outcome)
    # The executor re-publishing after a crash would use a new event id.
    await send(runtime, outcome.model_copy(update={"event_id": uuid4()}))
    await wait_until(lambda: len(texts_starting(slack, "Rollback completed", 200)) == 1)
    await wait_until(lambda: _all_sent(runtime, "statuspage"))
    await wait_until(lambda: _all_sent(runtime, "report"))
    await asyncio.sleep(0.5)  # time for a wrong second post to show up

    assert len(texts_starting(slack, "Rollback completed")) == 1
    assert len(texts_starting(slack, "Rollback started")) == 1
    patches = [item for item in statuspage.received() if item.method == "PATCH"]
    posts = [item for item in statuspage.received() if item.method == "POST"]
    assert len(posts) == 1
    assert len(patches) == 1
    (incident,) = statuspage.incidents.values()
    assert incident["status"] == "resolved"
    assert statuspage.components == {"comp-checkout": "operational"}
    assert await handled_events(runtime) == 3  # the raw copies share one event id


async def test_failed_rollback_sent_after_started_failed(
    slack, notifier_settings, notifiers, nats_server
):
    slack.script(Reply(500, "rollup_error"), Reply(500, "rollup_error"))
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url, slack_min_interval_seconds=0.1, max_attempts=2
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    await send(runtime, events.execute(created))
    await wait_until(lambda: len(slack.received(500)) == 2)
    await send(runtime, events.finished(created, "failed"))
    await wait_until(lambda: len(texts_starting(slack, "Rollback failed", 200)) == 1)
    await wait_until(lambda: _all_sent(runtime, "slack"))

    assert texts_starting(slack, "Rollback started", 200) == []
    failed = texts_starting(slack, "Rollback failed", 200)[0].json()
    assert "switch_version" in json.dumps(failed)
    assert "Manual action needed" in failed["text"]
    rows = await deliveries(runtime, "slack")
    assert [(row.kind, row.status) for row in rows] == [("started", "failed"), ("failed", "sent")]
    async with httpx.AsyncClient(base_url=runtime.base_url, headers=VIEWER) as client:
        response = await client.get(
            "/api/admin/notifications", params={"planId": str(created.plan_id), "status": "failed"}
        )
    assert response.status_code == 200
    (logged,) = [item for item in response.json()["deliveries"] if item["channel"] == "slack"]
    assert logged["kind"] == "started"
    assert logged["lastStatusCode"] == 500
    assert "rollup_error" in logged["lastError"]
    messages = await read_stream(nats_server.url, "rollback.notification.production.checkout", 5)
    assert len(messages) == 1
    notice = NotificationFailed.model_validate_json(messages[0].data)
    assert notice.channel == "slack"
    assert notice.plan_id == created.plan_id
    assert notice.status_code == 500
    assert "gave up after 2 attempts" in notice.error


async def test_late_start_not_sent_after_outcome(slack, notifier_settings, notifiers):
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url, slack_min_interval_seconds=0.1
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    await send(runtime, events.finished(created))
    await wait_until(lambda: len(texts_starting(slack, "Rollback completed", 200)) == 1)
    await send(runtime, events.execute(created))
    await wait_until(lambda: _consumer_idle(runtime))
    await wait_until(lambda: handled_events(runtime))
    await asyncio.sleep(0.3)

    assert texts_starting(slack, "Rollback started") == []
    assert [row.kind for row in await deliveries(runtime, "slack")] == ["completed"]


async def test_rejected_request_not_retried_and_logged(
    slack, notifier_settings, notifiers, caplog
):
    slack.script(Reply(404, "channel_not_found"))
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url, slack_min_interval_seconds=0.1
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    await send(runtime, events.execute(created))
    await wait_until(lambda: _all_sent(runtime, "slack"))
    await asyncio.sleep(0.3)

    assert [item.status for item in slack.received()] == [404]
    assert "channel_not_found" in caplog.text
    assert slack.webhook_url not in caplog.text
    assert "/services/T000" not in caplog.text


@BOTH_DATABASES
async def test_statuspage_down_does_not_block(
    slack, statuspage, notifier_settings, notifiers
):
    statuspage.down = True
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url,
        slack_min_interval_seconds=0.1,
        statuspage_api_url=statuspage.api_url,
        statuspage_page_id=statuspage.page_id,
        statuspage_api_key=statuspage.api_key,
        statuspage_components={"production/checkout": "comp-checkout"},
        max_attempts=100,
        backoff_seconds=0.2,
        backoff_max_seconds=0.5,
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    published = [events.execute(created)]
    for index, name in enumerate(STEPS):
        published.append(events.step(created, name, "running", at=3 + index))
        published.append(events.step(created, name, "succeeded", at=3.5 + index, duration_ms=400))
    published.append(events.finished(created))
    for event in published:
        await send(runtime, event)

    await wait_until(lambda: len(texts_starting(slack, "Rollback completed", 200)) == 1)
    await wait_until(lambda: _consumer_idle(runtime))
    assert await handled_events(runtime) == len(published)
    assert len(texts_starting(slack, "Rollback started", 200)) == 1
    assert statuspage.received(503), "the status page was never tried"
    pending = [row for row in await deliveries(runtime, "statuspage") if row.status == "pending"]
    assert [row.kind for row in pending] == ["started", "completed"]

    # Stop while the status page is still down; the next start resumes the pending messages.
    await notifiers.stop(runtime)
    statuspage.down = False
    restarted = await notifiers.start(settings)
    await wait_until(lambda: _all_sent(restarted, "statuspage"))
    (incident,) = statuspage.incidents.values()
    assert incident["status"] == "resolved"
    assert statuspage.components == {"comp-checkout": "operational"}
    assert len(texts_starting(slack, "Rollback completed")) == 1


async def _consumer_idle(runtime: Runtime) -> bool:
    js = runtime.context.broker.connection.jetstream()
    info = await js.consumer_info(ROLLBACK_STREAM.name, "notifier")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_completed_rollback_all_channels(
    slack, statuspage, notifier_settings, notifiers, nats_server, tmp_path: Path
):
    with FakeWebhook("hook-secret") as webhook:
        settings = notifier_settings(
            slack_webhook_url=slack.webhook_url,
            slack_min_interval_seconds=0.1,
            statuspage_api_url=statuspage.api_url,
            statuspage_page_id=statuspage.page_id,
            statuspage_api_key=statuspage.api_key,
            statuspage_components={"checkout": "comp-checkout"},
            webhook_url=f"{webhook.url}/hook",
            webhook_secret="hook-secret",
            webhook_events=["started", "completed"],
            reports_dir=str(tmp_path / "reports"),
        )
        runtime = await notifiers.start(settings)
        created = events.plan()
        published = [created, events.execute(created)]
        for index, name in enumerate(STEPS):
            published.append(events.step(created, name, "succeeded", at=3 + index, duration_ms=300))
        published.append(events.finished(created))
        for event in published:
            await send(runtime, event)
        await wait_until(lambda: len(webhook.accepted()) == 2)
        await wait_until(lambda: _all_sent(runtime, "report"))
        await wait_until(lambda: _all_sent(runtime, "slack"))

    assert [item.json()["text"].split(":")[0] for item in slack.received()] == [
        "Rollback started", "Rollback completed"
    ]
    bodies = [item.json() for item in webhook.accepted()]
    assert [body["type"] for body in bodies] == ["ExecutePlan", "PlanFinished"]
    assert bodies[1]["event"]["plan_id"] == str(created.plan_id)
    assert webhook.received(401) == []

    report_file = tmp_path / "reports" / f"{created.plan_id}.md"
    markdown = report_file.read_text()
    assert "## Timeline" in markdown
    assert "Service restored on v1.1.0" in markdown
    messages = await read_stream(nats_server.url, "rollback.report.production.checkout", 5)
    assert len(messages) == 1
    stored = IncidentReportStored.model_validate_json(messages[0].data)
    assert stored.plan_id == created.plan_id
    assert stored.markdown == markdown


@BOTH_DATABASES
async def test_two_replicas_send_once(slack, notifier_settings, notifiers):
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url,
        slack_min_interval_seconds=0.1,
        slack_events=["started", "completed", "escalation"],
    )
    first = await notifiers.start(settings)
    await notifiers.start(settings)
    plans = [events.plan(service=f"svc-{index}") for index in range(3)]
    for created in plans:
        await send(first, events.execute(created))
        await send(first, events.finished(created))
    await send(first, events.suppressed("loop_guard"))
    await wait_until(lambda: len(slack.received(200)) == 7)
    await wait_until(lambda: _consumer_idle(first))
    await asyncio.sleep(0.5)  # time for a second copy to show up

    texts = [item.json()["text"] for item in slack.received()]
    assert len(texts) == 7
    assert len(set(texts)) == 7
    for created in plans:
        ours = [text for text in texts if str(created.plan_id) in text]
        assert [text.split(":")[0] for text in ours] == ["Rollback started", "Rollback completed"]


async def test_escalation_after_outcome_rewrites_report(
    slack, notifier_settings, notifiers, nats_server, tmp_path: Path
):
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url,
        slack_min_interval_seconds=0.1,
        reports_dir=str(tmp_path / "reports"),
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    for event in (created, events.execute(created), events.finished(created)):
        await send(runtime, event)
    await wait_until(lambda: _all_sent(runtime, "report"))
    await send(runtime, events.escalation(created))
    # The Slack message comes from the same transaction that queues the second report.
    await wait_until(lambda: len(texts_starting(slack, "Escalation", 200)) == 1)
    await wait_until(lambda: _all_sent(runtime, "report"))

    markdown = (tmp_path / "reports" / f"{created.plan_id}.md").read_text()
    assert "**Severity:** SEV1" in markdown
    assert "watch_breach" in markdown
    messages = await read_stream(nats_server.url, "rollback.report.production.checkout", 5)
    reports = [IncidentReportStored.model_validate_json(message.data) for message in messages]
    assert len(reports) == 2
    assert len({report.event_id for report in reports}) == 2
    assert reports[-1].markdown == markdown


async def test_statuspage_420_waits_retry_after(statuspage, notifier_settings, notifiers):
    statuspage.script(Reply(420, '{"error": "enhance your calm"}', {"Retry-After": "1"}))
    settings = notifier_settings(
        statuspage_api_url=statuspage.api_url,
        statuspage_page_id=statuspage.page_id,
        statuspage_api_key=statuspage.api_key,
        statuspage_components={"checkout": "comp-checkout"},
        statuspage_min_interval_seconds=0.1,
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    await send(runtime, events.execute(created))
    await wait_until(lambda: _all_sent(runtime, "statuspage"))

    first, second = statuspage.received()
    assert (first.status, second.status) == (420, 201)
    assert second.received_at - first.received_at >= 1.0
    assert len(statuspage.incidents) == 1


async def test_invalid_event_dead_lettered(slack, notifier_settings, notifiers, nats_server):
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url, slack_min_interval_seconds=0.1
    )
    runtime = await notifiers.start(settings)
    created = events.plan()
    broken = events.finished(created).model_dump(mode="json")
    del broken["outcome"]
    js = runtime.context.broker.connection.jetstream()
    await js.publish("rollback.outcome.production.checkout", json.dumps(broken).encode())
    await send(runtime, events.execute(created))
    await wait_until(lambda: len(texts_starting(slack, "Rollback started", 200)) == 1)

    letters = await read_dead_letters(nats_server.url)
    assert len(letters) == 1
    assert "PlanFinished.outcome" in letters[0].headers[HEADER_ERROR]


async def read_dead_letters(url: str) -> list[Any]:
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        subscription = await js.pull_subscribe("deadletter.notifier", stream="TRAVI_DEADLETTER")
        return await subscription.fetch(5, timeout=3)
    finally:
        await connection.close()


@BOTH_DATABASES
async def test_prune_keeps_pending(slack, notifier_settings, notifiers):
    settings = notifier_settings(
        slack_webhook_url=slack.webhook_url,
        slack_min_interval_seconds=0.1,
        slack_events=["started"],
        max_attempts=100,
    )
    runtime = await notifiers.start(settings)
    created, other = events.plan(), events.plan(service="cart")
    await send(runtime, events.execute(created))
    await wait_until(lambda: _all_sent(runtime, "slack"))
    slack.script(*[Reply(500, "rollup_error")] * 50)
    await send(runtime, events.execute(other))
    await wait_until(lambda: len(slack.received(500)) >= 1)

    store = DeliveryStore(runtime.db)
    deleted = await store.prune(time.time() + 60)

    rows = await deliveries(runtime, "slack")
    assert [(row.service, row.status) for row in rows] == [("cart", "pending")]
    assert deleted >= 5  # two inbox rows, two stored events, one sent delivery
    assert await handled_events(runtime) == 0
