"""Hostile deployment records and rollback requests to the planner, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from services.planner import repository
from services.planner.errors import DeploymentRejected
from services.planner.models import Deployment
from services.planner.planning import Planner
from services.planner.routes import build_router
from services.planner.subscribers import DEPLOYMENT_CONSUMER
from services.runner import Runtime, migration_folders
from shared.auth import Authenticator
from shared.bus import DEAD_LETTER_STREAM, DEPLOYMENTS_STREAM
from shared.contracts import Contract, DeploymentRecorded, utc_now
from shared.db import Database, open_database, upgrade
from shared.settings import PlannerSettings
from tests.integration.test_planner_bus import publish_raw, read_stream, wait_until_acked

ENV = "production"
SVC = "checkout"
OPERATOR = {"Authorization": "Bearer operator-token"}


async def drop_event(subject: str, event: Contract) -> None:
    """Stand in for the bus: these tests read the database, not the events."""


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    await asyncio.to_thread(upgrade, database_url, migration_folders(["planner"]))
    database = open_database(database_url)
    yield database
    await database.close()


@pytest.fixture
def planner(db: Database) -> Planner:
    return Planner(db, drop_event, PlannerSettings())


@pytest.fixture
def client(planner: Planner) -> httpx.AsyncClient:
    auth = Authenticator({"operator-token": SecretStr("operator:olga")})
    app = FastAPI()
    app.include_router(build_router(planner, auth))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://planner")


def record(version: str, offset: timedelta = timedelta(0)) -> DeploymentRecorded:
    return DeploymentRecorded(environment=ENV, service=SVC, version=version, status="succeeded",
                              actor="ci", deployed_at=utc_now() + offset)


async def current(db: Database) -> str | None:
    async with db.sessions() as session:
        row = await repository.current_version(session, ENV, SVC)
    return row.version if row else None


async def test_future_deployment_is_rejected(planner, db):
    await planner.record_deployment(record("v1"), f"deployments.{ENV}.{SVC}")
    with pytest.raises(DeploymentRejected) as caught:
        await planner.record_deployment(record("v2", timedelta(days=365)),
                                        f"deployments.{ENV}.{SVC}")
    assert caught.value.field == "deployedAt"
    assert await current(db) == "v1"
    await planner.record_deployment(record("v3"), f"deployments.{ENV}.{SVC}")
    assert await current(db) == "v3"


async def test_small_clock_skew_is_accepted(planner, db):
    await planner.record_deployment(record("v1", timedelta(seconds=60)),
                                    f"deployments.{ENV}.{SVC}")
    assert await current(db) == "v1"


async def test_post_future_deployment_is_422(client, db):
    body = {"service": SVC, "environment": ENV, "version": "v9",
            "deployedAt": (utc_now() + timedelta(days=365)).isoformat()}
    async with client:
        response = await client.post("/api/admin/deployments", json=body, headers=OPERATOR)
    assert response.status_code == 422
    assert response.json()["field"] == "deployedAt"
    assert "clock" in response.json()["detail"]
    assert await current(db) is None


@pytest.mark.nats
async def test_future_deployment_on_bus_dead_lettered(nats_server, sqlite_url, make_settings):
    url = nats_server.url
    settings = make_settings(nats_url=url, database_url=sqlite_url)
    async with Runtime(settings, ["planner"]) as runtime:
        await publish_raw(url, f"deployments.{ENV}.{SVC}", record("v1", timedelta(days=365)))
        await wait_until_acked(url, DEPLOYMENT_CONSUMER, stream=DEPLOYMENTS_STREAM.name)
        letters = await read_stream(url, DEAD_LETTER_STREAM.name)
        async with runtime.db.sessions() as session:
            stored = (await session.scalars(select(Deployment))).all()

    [(subject, body)] = letters
    assert subject == f"deadletter.{DEPLOYMENT_CONSUMER}"
    assert body["version"] == "v1"
    assert stored == []


async def test_nul_character_is_422_not_500(client, db):
    deployment = {"service": SVC, "environment": ENV, "version": "v1", "actor": "ci\u0000bot"}
    rollback = {"service": SVC, "environment": ENV, "targetVersion": "v1",
                "reason": "bad\u0000release"}
    async with client:
        recorded = await client.post("/api/admin/deployments", json=deployment, headers=OPERATOR)
        created = await client.post("/api/admin/rollbacks", json=rollback, headers=OPERATOR)
    assert recorded.status_code == 422
    assert recorded.json()["detail"][0]["loc"] == ["body", "actor"]
    assert "NUL" in recorded.json()["detail"][0]["msg"]
    assert created.status_code == 422
    assert created.json()["detail"][0]["loc"] == ["body", "reason"]
    assert await current(db) is None


async def test_execute_after_cancel_is_409(client, planner):
    await planner.record_deployment(record("v1", timedelta(minutes=-2)), f"deployments.{ENV}.{SVC}")
    await planner.record_deployment(record("v2", timedelta(minutes=-1)), f"deployments.{ENV}.{SVC}")
    rollback = {"service": SVC, "environment": ENV, "targetVersion": "v1"}
    async with client:
        created = await client.post("/api/admin/rollbacks", json=rollback, headers=OPERATOR)
        plan_id = created.json()["id"]
        cancelled = await client.post(f"/api/admin/rollbacks/{plan_id}/cancel", headers=OPERATOR)
        executed = await client.post(f"/api/admin/rollbacks/{plan_id}/execute", headers=OPERATOR)
    assert created.status_code == 201
    assert cancelled.status_code == 202
    assert executed.status_code == 409
    assert "cancel" in executed.json()["detail"]


@pytest.mark.nats
@pytest.mark.postgres
async def test_nul_actor_on_bus_dead_lettered(nats_server, postgres_url, make_settings):
    url = nats_server.url
    settings = make_settings(nats_url=url, database_url=postgres_url)
    event = DeploymentRecorded(environment=ENV, service=SVC, version="v1", status="succeeded",
                               actor="ci\u0000bot")
    async with Runtime(settings, ["planner"]):
        await publish_raw(url, f"deployments.{ENV}.{SVC}", event)
        await wait_until_acked(url, DEPLOYMENT_CONSUMER, timeout=10.0,
                               stream=DEPLOYMENTS_STREAM.name)
        letters = await read_stream(url, DEAD_LETTER_STREAM.name)

    [(subject, body)] = letters
    assert subject == f"deadletter.{DEPLOYMENT_CONSUMER}"
    assert body["actor"] == "ci\u0000bot"
