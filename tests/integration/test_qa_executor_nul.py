"""Executor commands whose text carries a NUL character, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from uuid import uuid4

import nats
from sqlalchemy import select

from services.executor.models import PlanRow
from services.runner import Runtime
from shared.bus import DEAD_LETTER_STREAM
from shared.contracts import CancelPlan
from tests.integration.test_executor_runner import plan_created
from tests.integration.test_planner_bus import read_stream, wait_until_acked

COMMANDS_CONSUMER = "executor-commands"


async def publish_bytes(url: str, subject: str, body: bytes) -> None:
    connection = await nats.connect(url)
    await connection.jetstream().publish(subject, body, headers={"Nats-Msg-Id": str(uuid4())})
    await connection.close()


async def test_nul_cancel_dead_lettered_at_once(nats_server, database_url, make_settings):
    """PostgreSQL rejects NUL in text, so the command must fail validation, not the insert."""
    url = nats_server.url
    plan = plan_created()
    command = json.loads(CancelPlan(plan=plan, actor="bob", reason="x").model_dump_json())
    command["reason"] = "wrong\x00target"
    settings = make_settings(nats_url=url, database_url=database_url)
    async with Runtime(settings, ["executor"]) as runtime:
        await publish_bytes(url, "rollback.cancel", json.dumps(command).encode())
        # Retries of a failed insert would keep the message in flight far longer than this.
        await wait_until_acked(url, COMMANDS_CONSUMER, timeout=5.0)
        letters = await read_stream(url, DEAD_LETTER_STREAM.name)

        await publish_bytes(
            url, "rollback.cancel", CancelPlan(plan=plan, actor="bob").model_dump_json().encode()
        )
        await wait_until_acked(url, COMMANDS_CONSUMER, timeout=5.0)
        async with runtime.db.sessions() as session:
            status = await session.scalar(
                select(PlanRow.status).where(PlanRow.plan_id == str(plan.plan_id))
            )

    assert [subject for subject, _ in letters] == [f"deadletter.{COMMANDS_CONSUMER}"]
    assert status == "cancelled"
