"""The planner through a real nats-server and its HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import nats
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from sqlalchemy import select

from services.planner.events import derived_id
from services.planner.models import Plan
from services.planner.planning import Planner
from services.planner.service import BusPublisher
from services.planner.subscribers import BREACH_CONSUMER, DEPLOYMENT_CONSUMER, register_subscribers
from services.runner import Runtime, migration_folders
from shared.bus import (
    DEAD_LETTER_STREAM,
    DEPLOYMENTS_STREAM,
    ROLLBACK_STREAM,
    declare_streams,
    make_broker,
)
from shared.contracts import BreachDetected, Contract, DeploymentRecorded, PlanFinished
from shared.db import Database, open_database, upgrade
from tests.conftest import OPERATOR, VIEWER

pytestmark = pytest.mark.nats

ENV = "production"
SVC = "checkout"
BREACH_SUBJECT = f"rollback.breach.{ENV}.{SVC}"


def breach(version: str | None, trigger: str = "error_rate") -> BreachDetected:
    return BreachDetected(
        environment=ENV,
        service=SVC,
        version=version,
        trigger=trigger,
        measured=0.3,
        threshold=0.1,
        window_seconds=60,
        samples=100,
    )


async def publish_raw(url: str, subject: str, event: Contract, msg_id: str | None = None) -> None:
    """Publish as another service would, with ``msg_id`` standing in for the event id."""
    connection = await nats.connect(url)
    await connection.jetstream().publish(
        subject,
        event.model_dump_json().encode(),
        headers={"Nats-Msg-Id": msg_id or str(event.event_id)},
    )
    await connection.close()


async def read_stream(url: str, stream: str = ROLLBACK_STREAM.name) -> list[tuple[str, dict]]:
    """Return every message stored in ``stream`` as (subject, decoded body)."""
    connection = await nats.connect(url)
    subscription = await connection.jetstream().pull_subscribe(">", stream=stream)
    found: list[tuple[str, dict]] = []
    try:
        while True:
            for message in await subscription.fetch(100, timeout=0.3):
                found.append((message.subject, json.loads(message.data)))
    except (TimeoutError, NatsTimeoutError):
        pass
    await connection.close()
    return found


def by_subject(events: list[tuple[str, dict]], prefix: str) -> list[dict]:
    return [body for subject, body in events if subject.startswith(prefix)]


async def wait_for_stream(
    url: str, condition: Callable[[list[tuple[str, dict]]], bool], timeout: float = 20.0
) -> list[tuple[str, dict]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await read_stream(url)
        if condition(events):
            return events
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; stream has {events}")
        await asyncio.sleep(0.1)


async def wait_for_plan(db: Database, status: str, timeout: float = 20.0) -> list[Plan]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with db.sessions() as session:
            plans = list(await session.scalars(select(Plan)))
        if any(plan.status == status for plan in plans):
            return plans
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no plan became {status} within {timeout} s: {plans}")
        await asyncio.sleep(0.05)


async def wait_until_acked(
    url: str, durable: str, timeout: float = 20.0, stream: str = ROLLBACK_STREAM.name
) -> None:
    """Wait until the consumer has no message pending or waiting for its ack."""
    connection = await nats.connect(url)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            info = await connection.jetstream().consumer_info(stream, durable)
            if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{durable} still has messages in flight: {info}")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def record(client: httpx.AsyncClient, *versions: tuple[str, str]) -> None:
    for version, status in versions:
        response = await client.post(
            "/api/admin/deployments",
            json={"service": SVC, "environment": ENV, "version": version, "status": status},
            headers=OPERATOR,
        )
        assert response.status_code == 202, response.text


def finished(plan: dict[str, Any], outcome: str) -> PlanFinished:
    return PlanFinished(
        plan_id=plan["plan_id"],
        environment=ENV,
        service=SVC,
        from_version=plan["from_version"],
        to_version=plan["to_version"],
        trigger=plan["trigger"],
        trigger_type=plan["trigger_type"],
        outcome=outcome,
        started_at=plan["created_at"],
        finished_at=plan["created_at"],
        duration_ms=0.0,
    )


@pytest.fixture
def settings_for(nats_server, database_url, make_settings):
    def build(**overrides: object):
        return make_settings(nats_url=nats_server.url, database_url=database_url, **overrides)

    return build


async def test_restart_keeps_cooldown(nats_server, database_url, settings_for):
    url = nats_server.url
    async with Runtime(settings_for(), ["planner"]) as runtime:
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            await record(client, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
        await publish_raw(url, BREACH_SUBJECT, breach("v3"))
        events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.execute"))
        [plan] = by_subject(events, "rollback.plan.")
        assert (plan["from_version"], plan["to_version"]) == ("v3", "v2")
        await publish_raw(url, f"rollback.outcome.{ENV}.{SVC}", finished(plan, "completed"))
        await wait_for_plan(runtime.db, "completed")

    async with Runtime(settings_for(), ["planner"]):
        await publish_raw(url, BREACH_SUBJECT, breach("v2"))
        events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.suppressed."))

    [suppressed] = by_subject(events, "rollback.suppressed.")
    assert suppressed["reason"] == "cooldown"
    assert len(by_subject(events, "rollback.plan.")) == 1
    assert len(by_subject(events, "rollback.execute")) == 1


async def test_deployments_from_bus(nats_server, database_url, settings_for):
    url = nats_server.url
    async with Runtime(settings_for(), ["planner"]):
        for version in ("v1", "v2"):
            record = DeploymentRecorded(
                environment=ENV, service=SVC, version=version, status="succeeded", actor="ci"
            )
            await publish_raw(url, f"deployments.{ENV}.{SVC}", record)
        await wait_until_acked(url, DEPLOYMENT_CONSUMER, stream=DEPLOYMENTS_STREAM.name)
        await publish_raw(url, BREACH_SUBJECT, breach(None))
        events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.plan."))

    [plan] = by_subject(events, "rollback.plan.")
    assert plan["from_version"] == "v2"
    assert plan["to_version"] == "v1"


async def test_redelivered_breach_one_plan(nats_server, database_url, settings_for):
    url = nats_server.url
    event = breach("v2")
    async with Runtime(settings_for(), ["planner"]) as runtime:
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            await record(client, ("v1", "succeeded"), ("v2", "succeeded"))
        # Two copies in the stream, as when a producer republishes after the duplicate window.
        await publish_raw(url, BREACH_SUBJECT, event, msg_id="first-copy")
        await publish_raw(url, BREACH_SUBJECT, event, msg_id="second-copy")
        await wait_until_acked(url, BREACH_CONSUMER)
        events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.execute"))
        async with runtime.db.sessions() as session:
            plans = list(await session.scalars(select(Plan)))

    assert len(plans) == 1
    assert len(by_subject(events, "rollback.plan.")) == 1
    assert len(by_subject(events, "rollback.execute")) == 1
    assert by_subject(events, "rollback.suppressed.") == []


class FlakyPublisher:
    """Fails the first publish, as a process that dies between its commit and its publish."""

    def __init__(self, inner: BusPublisher) -> None:
        self.inner = inner
        self.calls = 0

    async def __call__(self, subject: str, event: Contract) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("lost the bus after the commit")
        await self.inner(subject, event)


async def test_publish_failure_redelivers_stored_events(nats_server, database_url, make_settings):
    url = nats_server.url
    settings = make_settings(nats_url=url, database_url=database_url)
    await asyncio.to_thread(upgrade, database_url, migration_folders(["planner"]))
    db = open_database(database_url)
    broker = make_broker(url)
    await broker.connect()
    await declare_streams(broker, settings)
    publisher = FlakyPublisher(BusPublisher(broker, timeout=5.0))
    planner = Planner(db, publisher, settings.planner)
    register_subscribers(broker, planner)
    await broker.start()
    try:
        for version in ("v1", "v2"):
            await planner.record_deployment(
                DeploymentRecorded(
                    environment=ENV, service=SVC, version=version, status="succeeded", actor="ci"
                ),
                f"deployments.{ENV}.{SVC}",
            )
        event = breach("v2")
        await publish_raw(url, BREACH_SUBJECT, event)
        events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.execute"))
        await wait_until_acked(url, BREACH_CONSUMER)
    finally:
        await broker.stop()
        await db.close()

    [plan] = by_subject(events, "rollback.plan.")
    assert plan["plan_id"] == str(derived_id(event.event_id, "plan"))
    assert len(by_subject(events, "rollback.execute")) == 1
    assert publisher.calls >= 3


async def test_two_replicas_one_plan(nats_server, database_url, settings_for):
    url = nats_server.url
    async with Runtime(settings_for(), ["planner"]) as first, Runtime(settings_for(), ["planner"]):
        async with httpx.AsyncClient(base_url=first.base_url) as client:
            await record(client, ("v1", "succeeded"), ("v2", "succeeded"))
        await publish_raw(url, BREACH_SUBJECT, breach("v2", "error_rate"))
        await asyncio.sleep(0.01)
        await publish_raw(url, BREACH_SUBJECT, breach("v2", "latency"))
        events = await wait_for_stream(
            url,
            lambda e: by_subject(e, "rollback.plan.") and by_subject(e, "rollback.suppressed."),
        )
        await wait_until_acked(url, BREACH_CONSUMER)
        async with first.db.sessions() as session:
            plans = list(await session.scalars(select(Plan)))

    assert len(plans) == 1
    assert len(by_subject(events, "rollback.plan.")) == 1
    [suppressed] = by_subject(events, "rollback.suppressed.")
    assert suppressed["reason"] == "in_progress"
    assert suppressed["plan_id"] == plans[0].id


async def test_http_auth(nats_server, database_url, settings_for):
    async with Runtime(settings_for(), ["planner"]) as runtime:
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            body = {"service": SVC, "environment": ENV, "targetVersion": "v1"}
            deployment = {"service": SVC, "environment": ENV, "version": "v1"}
            plan_path = "/api/admin/rollbacks/00000000-0000-0000-0000-000000000001"
            unauthenticated = [
                await client.post("/api/admin/rollbacks", json=body),
                await client.post("/api/admin/deployments", json=deployment),
                await client.post(f"{plan_path}/execute"),
                await client.post(f"{plan_path}/cancel"),
                await client.post(
                    "/api/admin/rollbacks", json=body, headers={"Authorization": "Bearer wrong"}
                ),
            ]
            forbidden = [
                await client.post("/api/admin/rollbacks", json=body, headers=VIEWER),
                await client.post("/api/admin/deployments", json=deployment, headers=VIEWER),
                await client.post(f"{plan_path}/execute", headers=VIEWER),
                await client.post(f"{plan_path}/cancel", headers=VIEWER),
            ]
            missing = await client.post(f"{plan_path}/execute", headers=OPERATOR)

    assert [r.status_code for r in unauthenticated] == [401] * 5
    assert [r.status_code for r in forbidden] == [403] * 4
    assert missing.status_code == 404


async def test_http_manual_rollback(nats_server, database_url, settings_for):
    url = nats_server.url
    async with Runtime(settings_for(), ["planner"]) as runtime:
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            await record(
                client,
                ("v1", "succeeded"),
                ("v2", "succeeded"),
                ("v3", "failed"),
                ("v4", "succeeded"),
            )
            rejected = await client.post(
                "/api/admin/rollbacks",
                json={"service": SVC, "environment": ENV, "targetVersion": "v3"},
                headers=OPERATOR,
            )
            same = await client.post(
                "/api/admin/rollbacks",
                json={"service": SVC, "environment": ENV, "target_version": "v4"},
                headers=OPERATOR,
            )
            invalid = await client.post(
                "/api/admin/rollbacks",
                json={"service": "Bad Name", "environment": ENV, "targetVersion": "v2"},
                headers=OPERATOR,
            )
            created = await client.post(
                "/api/admin/rollbacks",
                json={
                    "service": SVC,
                    "environment": ENV,
                    "target_version": "v2",
                    "fromVersion": "v4",
                    "reason": "checkout errors",
                },
                headers=OPERATOR,
            )
            plan_id = created.json()["id"]
            executed = await client.post(
                f"/api/admin/rollbacks/{plan_id}/execute", headers=OPERATOR
            )
            again = await client.post(f"/api/admin/rollbacks/{plan_id}/execute", headers=OPERATOR)
            cancelled = await client.post(
                f"/api/admin/rollbacks/{plan_id}/cancel",
                json={"reason": "wrong day"},
                headers=OPERATOR,
            )
            events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.cancel"))
            [plan_event] = by_subject(events, "rollback.plan.")
            await publish_raw(
                url, f"rollback.outcome.{ENV}.{SVC}", finished(plan_event, "cancelled")
            )
            [plan] = await wait_for_plan(runtime.db, "cancelled")
            deployments = await read_stream(url, DEPLOYMENTS_STREAM.name)

    assert rejected.status_code == 422
    assert rejected.json()["field"] == "targetVersion"
    assert "never deployed successfully" in rejected.json()["detail"]
    assert same.status_code == 409
    assert invalid.status_code == 422
    assert "service" in invalid.text
    assert created.status_code == 201, created.text
    assert created.json()["actor"] == "alice"
    assert created.json()["status"] == "pending"
    assert created.json()["fromVersion"] == "v4"
    assert executed.status_code == 202
    assert executed.json()["status"] == "in_progress"
    assert again.status_code == 409
    assert cancelled.status_code == 202
    [command] = by_subject(events, "rollback.execute")
    assert command["plan"]["plan_id"] == plan_id
    assert command["plan"]["to_version"] == "v2"
    assert command["actor"] == "alice"
    [cancel] = by_subject(events, "rollback.cancel")
    assert cancel["reason"] == "wrong day"
    assert plan.id == plan_id
    assert [subject for subject, _ in deployments] == [f"deployments.{ENV}.{SVC}"] * 4
    assert [body["version"] for _, body in deployments] == ["v1", "v2", "v3", "v4"]
    assert {body["actor"] for _, body in deployments} == {"alice"}


async def test_subject_mismatch_dead_lettered(nats_server, sqlite_url, make_settings):
    url = nats_server.url
    settings = make_settings(nats_url=url, database_url=sqlite_url)
    async with Runtime(settings, ["planner"]):
        await publish_raw(url, f"rollback.breach.staging.{SVC}", breach("v2"))
        await wait_until_acked(url, BREACH_CONSUMER)
        letters = await read_stream(url, DEAD_LETTER_STREAM.name)

    [(subject, body)] = letters
    assert subject == f"deadletter.{BREACH_CONSUMER}"
    assert body["environment"] == ENV


async def test_deferred_breach_decided_after_cooldown(nats_server, database_url, settings_for):
    """A v4 breach in the cooldown after v3's rollback becomes a plan once the cooldown ends."""
    url = nats_server.url
    # The cooldown must outlast the steps between the first plan and the v4 breach.
    planner_settings = {"cooldown_seconds": {"error_rate": 4.0}, "outbox_relay_seconds": 0.2}
    async with Runtime(settings_for(planner=planner_settings), ["planner"]) as runtime:
        async with httpx.AsyncClient(base_url=runtime.base_url) as client:
            await record(client, ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "succeeded"))
            await publish_raw(url, BREACH_SUBJECT, breach("v3"))
            events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.plan."))
            [first] = by_subject(events, "rollback.plan.")
            await publish_raw(url, f"rollback.outcome.{ENV}.{SVC}", finished(first, "completed"))
            await wait_for_plan(runtime.db, "completed")
            await record(client, ("v4", "succeeded"))
        await publish_raw(url, BREACH_SUBJECT, breach("v4"))
        events = await wait_for_stream(
            url, lambda e: len(by_subject(e, "rollback.plan.")) == 2, timeout=30.0
        )

    [suppressed] = by_subject(events, "rollback.suppressed.")
    assert suppressed["reason"] == "cooldown"
    assert "re-checked at" in suppressed["detail"]
    second = by_subject(events, "rollback.plan.")[1]
    assert (second["from_version"], second["to_version"]) == ("v4", "v2")
    assert second["breach"]["event_id"] == str(
        derived_id(suppressed["breach"]["event_id"], "deferred")
    )
    assert len(by_subject(events, "rollback.execute")) == 2
