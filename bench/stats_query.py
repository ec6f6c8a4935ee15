"""Latency of ``GET /api/admin/rollback/stats`` with 1,000 and with 100,000 plans recorded.

Usage: .venv/bin/python bench/stats_query.py [--plans 1000 100000] [--queries 2000]
       [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

For each plan count, a fresh database gets the stats migrations and the plans, spread over 365
days, 3 environments, 20 services and the 7 triggers. The smallest set is applied through the
live consumer's code (``store.apply_event``, a PlanCreated and a PlanFinished per plan). Larger
sets are bulk-loaded with the same contribution rule, and their all-time counts are checked
against a sum over the plan rows. Each query shape is then sent ``--queries`` times through the
route, in-process (httpx's ASGI transport, no socket), with a viewer token. Requests alternate
between the plan counts, and the first 100 are warm-up. Percentiles are nearest-rank. Besides
the wall time, the CPU time of this process per request is recorded: other processes on the
machine do not inflate it, but on PostgreSQL it leaves out the server's work. The baseline is the same route's cheapest query (``GET /api/admin/rollbacks/{id}`` of
an unknown id: auth, one primary-key lookup, a 404), so the ratio shows the stats query's cost
above a request that does almost nothing.

The stats query reads the count tables (all-time, or per day for a time range) at the level of
its filter, and sums plan rows only inside the partial days at a range's edges.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from uuid import UUID

import httpx
import psycopg
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from services.stats import projection, store
from services.stats.api import build_router
from services.stats.models import COUNT_FIELDS, StatsDailyCount, StatsPlan, StatsTotalCount
from services.stats.summary import Totals, add_all, stats_document
from shared.auth import Authenticator
from shared.contracts import PlanCreated, PlanFinished
from shared.db import open_database, upgrade

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = [ROOT / "services" / "stats" / "migrations"]
END = datetime(2026, 12, 1, tzinfo=UTC)
ENVIRONMENTS = ("production", "staging", "canary")
SERVICES = tuple(f"service-{index:02d}" for index in range(20))
AUTOMATIC = ("error_rate", "latency", "health_check", "budget_exceeded", "timeout", "alert")
OUTCOMES = ("completed", "completed", "completed", "failed", "cancelled", None)
QUERIES = {
    "all time": {},
    "one environment": {"environment": "production"},
    "one service": {"environment": "production", "service": "service-03"},
    "last 7 days, partial edges": {
        "since": (END - timedelta(days=7, hours=5)).isoformat(),
        "until": (END - timedelta(hours=2)).isoformat(),
    },
    "last 30 days": {"since": (END - timedelta(days=30)).isoformat()},
    "one service, 90 days": {
        "service": "service-03",
        "since": (END - timedelta(days=90, hours=3)).isoformat(),
    },
}
TOKEN = "bench-viewer"


def synthetic_plan(index: int, rng: random.Random) -> tuple[PlanCreated, PlanFinished | None]:
    """Return one plan's creation and outcome (None while it is still open)."""
    created_at = END - timedelta(seconds=rng.uniform(0, 365 * 86400))
    manual = rng.random() < 0.2
    trigger = "manual" if manual else rng.choice(AUTOMATIC)
    plan = PlanCreated(
        plan_id=UUID(int=index + 1),
        environment=rng.choice(ENVIRONMENTS),
        service=rng.choice(SERVICES),
        from_version="v2.0.0",
        to_version="v1.9.0",
        trigger=trigger,
        trigger_type="manual" if manual else "automatic",
        actor="bench",
        created_at=created_at,
        occurred_at=created_at,
    )
    outcome = rng.choice(OUTCOMES)
    if outcome is None:
        return plan, None
    started = created_at + timedelta(seconds=rng.uniform(0, 5))
    seconds = rng.uniform(2, 60)
    finished = PlanFinished(
        plan_id=plan.plan_id, environment=plan.environment, service=plan.service,
        from_version=plan.from_version, to_version=plan.to_version, trigger=plan.trigger,
        trigger_type=plan.trigger_type, outcome=outcome, started_at=started,
        finished_at=started + timedelta(seconds=seconds), duration_ms=seconds * 1000,
        occurred_at=started + timedelta(seconds=seconds),
    )
    return plan, finished


async def load_through_events(db, count: int) -> None:
    rng = random.Random(7)
    async with db.sessions() as session, session.begin():
        for index in range(count):
            plan, finished = synthetic_plan(index, rng)
            await store.apply_event(session, "rollback.plan", plan)
            if finished is not None:
                await store.apply_event(session, "rollback.outcome", finished)


def plan_row(plan: PlanCreated, finished: PlanFinished | None) -> StatsPlan:
    row = projection.new_plan(str(plan.plan_id), plan.occurred_at)
    projection.note_event(row, plan.occurred_at, plan.environment, plan.service)
    projection.apply_created(row, plan)
    if finished is not None:
        projection.apply_finished(row, finished)
    return row


async def bulk_load(db, count: int) -> None:
    rng = random.Random(7)
    totals: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    daily: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    columns = [column.key for column in StatsPlan.__table__.columns]
    async with db.sessions() as session, session.begin():
        batch = []
        for index in range(count):
            row = plan_row(*synthetic_plan(index, rng))
            part = projection.contribution(row)
            row.bucket_at = part.bucket_at
            row.counted_duration_ms = part.duration_ms
            daily_changes, total_changes = projection.count_changes(None, part)
            for target, changes in ((daily, daily_changes), (totals, total_changes)):
                for key, counts in changes.items():
                    for name, value in counts.items():
                        target[key][name] += value
            batch.append({name: getattr(row, name) for name in columns})
            if len(batch) == 5000:
                await session.execute(insert(StatsPlan), batch)
                batch = []
        if batch:
            await session.execute(insert(StatsPlan), batch)
        names = ("environment", "service", "trigger", "trigger_type")
        await session.execute(
            insert(StatsTotalCount),
            [{**dict(zip(names, key, strict=True)), **counts} for key, counts in totals.items()],
        )
        rows = [{**dict(zip(("day", *names), key, strict=True)), **counts} for key, counts in daily.items()]
        for start in range(0, len(rows), 5000):
            await session.execute(insert(StatsDailyCount), rows[start : start + 5000])


async def check_against_plans(db) -> dict[str, object]:
    """Return the all-time document summed from the plan rows, to compare with the counts."""
    async with db.sessions() as session:
        plans = (await session.scalars(select(StatsPlan))).all()
    parts = [projection.contribution(plan) for plan in plans]
    groups = [(p.trigger, p.trigger_type, p.counts()) for p in parts if p is not None]
    return stats_document(add_all(Totals(), groups))


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


async def timed_get(http: httpx.AsyncClient, path: str, params: dict) -> tuple[float, float]:
    """Send one request; return its wall time and this process's CPU time, in ms."""
    started, cpu_started = time.perf_counter(), time.process_time()
    response = await http.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    cpu = (time.process_time() - cpu_started) * 1000
    if response.status_code not in (200, 404):
        raise RuntimeError(f"{path} returned HTTP {response.status_code}: {response.text}")
    return elapsed, cpu


async def prepare(url: str, count: int) -> tuple[httpx.AsyncClient, object]:
    """Load ``count`` plans into the database at ``url``; return a client of the route and the db."""
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    db = open_database(url)
    started = time.perf_counter()
    if count <= 1000:
        await load_through_events(db, count)
    else:
        await bulk_load(db, count)
    loaded = time.perf_counter() - started
    context = SimpleNamespace(auth=Authenticator({TOKEN: SecretStr("viewer")}), db=db)
    app = FastAPI()
    app.include_router(build_router(context, run_rebuild=None))
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bench",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    expected = await check_against_plans(db)
    served = (await http.get("/api/admin/rollback/stats")).json()
    if served != expected:
        raise RuntimeError(f"count tables disagree with the plans: {served} != {expected}")
    print(f"  {count} plans loaded in {loaded:.1f} s; total {served['total']}, counts checked")
    return http, db


async def measure(urls: dict[int, str], queries: int) -> None:
    """Time every query shape on every plan count, alternating between the databases.

    Alternating request by request puts the machine's noise on every plan count alike, so the
    figures of 1,000 and 100,000 plans can be compared.
    """
    clients = {count: await prepare(url, count) for count, url in urls.items()}
    shapes = {"baseline: unknown plan, 404": (f"/api/admin/rollbacks/{UUID(int=0)}", {})}
    shapes.update({name: ("/api/admin/rollback/stats", params) for name, params in QUERIES.items()})
    header = "  ".join(f"{count:>7d} plans: median / p99 / CPU p99 ms" for count in clients)
    print(f"  {'query':32s}  {header}")
    for name, (path, params) in shapes.items():
        samples: dict[int, list[float]] = {count: [] for count in clients}
        cpu_samples: dict[int, list[float]] = {count: [] for count in clients}
        for index in range(queries + 100):
            order = list(clients) if index % 2 == 0 else list(reversed(list(clients)))
            for count in order:
                elapsed, cpu = await timed_get(clients[count][0], path, params)
                if index >= 100:
                    samples[count].append(elapsed)
                    cpu_samples[count].append(cpu)
        cells = "  ".join(
            f"{statistics.median(samples[count]):>13.2f} / {percentile(samples[count], 0.99):6.2f}"
            f" / {percentile(cpu_samples[count], 0.99):6.2f}    "
            for count in clients
        )
        print(f"  {name:32s}  {cells}")
    for http, db in clients.values():
        await http.aclose()
        await db.close()


def fresh_postgres(admin_url: str, name: str) -> str:
    admin = make_url(admin_url).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plans", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--postgres", help="Admin URL of a PostgreSQL server to measure too.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sqlite = {count: f"sqlite:///{Path(folder) / f'stats-{count}.db'}" for count in args.plans}
        print("sqlite:")
        await measure(sqlite, args.queries)
        if args.postgres:
            postgres = {
                count: fresh_postgres(args.postgres, f"travi_bench_stats_{count}") for count in args.plans
            }
            print("postgres:")
            await measure(postgres, args.queries)
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
