"""Executor throughput: plans per second through one in-process executor, with a baseline.

The script starts a fresh nats-server, runs the executor (driver ``none``, no traffic
control) in this process against SQLite or ``--database-url``, publishes ``--plans`` execute
commands and measures the time until every plan's outcome is on the bus. As a baseline in the
same run, it measures how long the same number of event publishes (17 per plan: 16 step
events and one outcome) takes with ``shared.bus.publish`` alone. ``--profile`` prints the
functions with the most cumulative time. Run:

    .venv/bin/python bench/executor_throughput.py --plans 100
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
import uuid
from pathlib import Path

import nats

from services.runner import Runtime
from shared.bus import EXECUTE_SUBJECT, declare_streams, make_broker, publish
from shared.contracts import ExecutePlan, PlanCreated, StepChanged, utc_now
from shared.embedded import EmbeddedNats
from shared.settings import Settings

EVENTS_PER_PLAN = 17


def plan(index: int) -> PlanCreated:
    return PlanCreated(
        plan_id=uuid.uuid4(),
        environment="production",
        service=f"svc-{index}",
        from_version="v2",
        to_version="v1",
        trigger="manual",
        trigger_type="manual",
        actor="bench",
        created_at=utc_now(),
    )


async def baseline(url: str, count: int) -> float:
    broker = make_broker(url)
    await broker.connect()
    await declare_streams(broker, Settings())
    started = time.perf_counter()
    for index in range(count):
        event = StepChanged(
            plan_id=uuid.uuid4(),
            environment="production",
            service=f"svc-{index}",
            step="notify",
            status="running",
        )
        await publish(broker, "rollback.step.production.bench", event)
    elapsed = time.perf_counter() - started
    await broker.stop()
    return elapsed


async def run_plans(url: str, database_url: str, state: Path, count: int) -> float:
    settings = Settings(nats_url=url, database_url=database_url, state_dir=state, http_port=0)
    outcomes: set[bytes] = set()
    done = asyncio.Event()

    async def keep(message: nats.aio.msg.Msg) -> None:
        outcomes.add(message.data)
        if len(outcomes) >= count:
            done.set()

    async with Runtime(settings, ["executor"]):
        tap = await nats.connect(url)
        await tap.subscribe("rollback.outcome.>", cb=keep)
        broker = make_broker(url)
        await broker.connect()
        started = time.perf_counter()
        for index in range(count):
            await publish(broker, EXECUTE_SUBJECT, ExecutePlan(plan=plan(index), actor="bench"))
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - started
        await broker.stop()
        await tap.close()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100, help="Plans to run.")
    parser.add_argument(
        "--database-url", help="Database URL (default: SQLite in a temporary folder)."
    )
    parser.add_argument("--profile", action="store_true", help="Print the top functions.")
    parser.add_argument(
        "--sort", default="cumulative", help="Profile order: cumulative, tottime, and so on."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, EmbeddedNats(Path(folder) / "nats") as server:
        database_url = args.database_url or f"sqlite:///{folder}/travi.db"
        base = await baseline(server.url, args.plans * EVENTS_PER_PLAN)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        elapsed = await run_plans(server.url, database_url, Path(folder) / "state", args.plans)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(40)
    print(
        f"baseline: {args.plans * EVENTS_PER_PLAN} publishes in {base:.2f} s "
        f"({args.plans / base:.1f} plans' worth of events per second)"
    )
    print(
        f"executor: {args.plans} plans in {elapsed:.2f} s ({args.plans / elapsed:.1f} plans/s); "
        f"{elapsed / base:.1f} times the baseline"
    )


if __name__ == "__main__":
    asyncio.run(main())
