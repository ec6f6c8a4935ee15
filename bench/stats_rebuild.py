"""Time of ``travi stats rebuild``: replaying the rollback stream into a fresh stats view.

Usage: .venv/bin/python bench/stats_rebuild.py [--plans 5000] [--postgres ADMIN_URL]

An embedded nats-server gets ``--plans`` plans as events (a PlanCreated, an ExecutePlan, eight
StepChanged and a PlanFinished each, 11 events per plan). The baseline reads the whole stream
through an ordered consumer and decodes each event without applying it. The subject is
``services.stats.rebuild.rebuild`` into an SQLite file, and into a PostgreSQL database with
``--postgres``. It also wipes the view and applies every event, in one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import nats
from nats.js.api import DeliverPolicy

from services.stats.consumer import decode
from services.stats.rebuild import rebuild
from shared.bus import ROLLBACK_STREAM, declare_streams, make_broker
from shared.contracts import STEP_NAMES, ExecutePlan, PlanCreated, PlanFinished, StepChanged
from shared.db import open_database, upgrade
from shared.embedded import EmbeddedNats
from shared.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats_query import MIGRATIONS, fresh_postgres  # noqa: E402 - the sibling bench script

START = datetime(2026, 11, 1, tzinfo=UTC)


def plan_events(index: int) -> list[tuple[str, object]]:
    created_at = START + timedelta(minutes=index)
    plan = PlanCreated(
        plan_id=UUID(int=index + 1), environment="production", service=f"service-{index % 20:02d}",
        from_version="v2", to_version="v1", trigger="error_rate", trigger_type="automatic",
        actor="bench", created_at=created_at,
    )
    scope = f"production.{plan.service}"
    events: list[tuple[str, object]] = [
        (f"rollback.plan.{scope}", plan),
        ("rollback.execute", ExecutePlan(plan=plan, actor="bench")),
    ]
    for name in STEP_NAMES:
        events.append((f"rollback.step.{scope}", StepChanged(
            plan_id=plan.plan_id, environment=plan.environment, service=plan.service, step=name,
            status="succeeded", started_at=created_at, duration_ms=100.0)))
    events.append((f"rollback.outcome.{scope}", PlanFinished(
        plan_id=plan.plan_id, environment=plan.environment, service=plan.service,
        from_version="v2", to_version="v1", trigger="error_rate", trigger_type="automatic",
        outcome="completed", started_at=created_at, finished_at=created_at + timedelta(seconds=8),
        duration_ms=8000.0)))
    return events


async def fill_stream(url: str, plans: int) -> int:
    broker = make_broker(url)
    await broker.connect()
    await declare_streams(broker, Settings())
    await broker.stop()
    connection = await nats.connect(url)
    js = connection.jetstream()
    count = 0
    for index in range(plans):
        acks = []
        for subject, event in plan_events(index):
            body = event.model_dump_json().encode()
            headers = {"Nats-Msg-Id": str(event.event_id)}
            acks.append(await js.publish_async(subject, body, headers=headers))
            count += 1
        await asyncio.gather(*acks)
    await connection.close()
    return count


async def read_only(url: str) -> float:
    connection = await nats.connect(url)
    js = connection.jetstream()
    info = await js.stream_info(ROLLBACK_STREAM.name)
    started = time.perf_counter()
    subscription = await js.subscribe(
        "rollback.>", stream=ROLLBACK_STREAM.name, ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    while True:
        msg = await subscription.next_msg(timeout=5)
        decode(msg.subject, json.loads(msg.data))
        if msg.metadata.sequence.stream >= info.state.last_seq:
            break
    elapsed = time.perf_counter() - started
    await subscription.unsubscribe()
    await connection.close()
    return elapsed


async def time_rebuild(nats_url: str, database_url: str) -> float:
    await asyncio.to_thread(upgrade, database_url, MIGRATIONS)
    db = open_database(database_url)
    connection = await nats.connect(nats_url)
    result = await rebuild(db, connection)
    await connection.close()
    await db.close()
    return result.seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plans", type=int, default=5000)
    parser.add_argument("--postgres", help="Admin URL of a PostgreSQL server to measure too.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedNats(Path(folder) / "nats")
        server.start()
        try:
            events = await fill_stream(server.url, args.plans)
            baseline = await read_only(server.url)
            print(f"{args.plans} plans, {events} events")
            print(f"  baseline: read and decode the stream  {baseline:7.2f} s  "
                  f"{events / baseline:8.0f} events/s")
            targets = [("sqlite", f"sqlite:///{Path(folder) / 'stats.db'}")]
            if args.postgres:
                targets.append(("postgres", fresh_postgres(args.postgres, "travi_bench_rebuild")))
            for name, url in targets:
                seconds = await time_rebuild(server.url, url)
                print(f"  rebuild into {name:8s}                {seconds:7.2f} s  "
                      f"{events / seconds:8.0f} events/s  ratio {seconds / baseline:.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
