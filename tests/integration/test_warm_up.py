"""The planner's and executor's warm-up at start: it runs the breach path and stores nothing."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from services.executor.models import PlanRow, StepRow
from services.planner.models import BadVersion, Cooldown, InboxEntry, OutboxMessage, Plan
from services.runner import Runtime

TABLES = (Plan, InboxEntry, OutboxMessage, Cooldown, BadVersion, PlanRow, StepRow)


async def test_warm_up_leaves_no_rows(nats_server, database_url, make_settings, caplog):
    settings = make_settings(nats_url=nats_server.url, database_url=database_url)
    with caplog.at_level(logging.WARNING):
        async with Runtime(settings, ["planner", "executor"]) as runtime:
            # A second start warms up again on a database that already has the schema.
            async with Runtime(settings, ["planner", "executor"]):
                pass
            async with runtime.db.sessions() as session:
                counts = {
                    model.__tablename__: await session.scalar(
                        select(func.count()).select_from(model)
                    )
                    for model in TABLES
                }

    failures = [record.message for record in caplog.records if "Warming up" in record.message]
    assert failures == []
    assert counts == dict.fromkeys(counts, 0)
