"""Time per transaction on SQLite: SQLAlchemy's aiosqlite adapter against the one-trip adapter.

Usage: .venv/bin/python bench/sqlite_trips.py [--transactions 300]

Each transaction runs ten short statements, about as many as the planner's breach decision: five
reads of one row and five single-row writes, then a commit. The baseline is SQLAlchemy's own
aiosqlite adapter, measured in the same run on a second database file of the same schema.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.db import open_database

SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"


async def run_transactions(engine: AsyncEngine, count: int) -> list[float]:
    """Run ``count`` transactions of ten statements; return each one's time in milliseconds."""
    read = text("SELECT name FROM items WHERE id = :id")
    write = text("INSERT INTO items (name) VALUES (:name)")
    times = []
    for index in range(count):
        started = time.perf_counter()
        async with engine.begin() as connection:
            for offset in range(5):
                await connection.execute(read, {"id": index * 5 + offset})
                await connection.execute(write, {"name": f"item-{index}-{offset}"})
        times.append((time.perf_counter() - started) * 1000)
    return times


def _wal(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        baseline_engine = create_async_engine(f"sqlite+aiosqlite:///{Path(folder) / 'base.db'}")
        event.listen(baseline_engine.sync_engine, "connect", _wal)
        one_trip = open_database(f"sqlite:///{Path(folder) / 'one_trip.db'}")
        try:
            for engine in (baseline_engine, one_trip.engine):
                async with engine.begin() as connection:
                    await connection.execute(text(SCHEMA))
                # A first round compiles the statements and fills the caches for both.
                await run_transactions(engine, 20)
            baseline = await run_transactions(baseline_engine, args.transactions)
            measured = await run_transactions(one_trip.engine, args.transactions)
        finally:
            await baseline_engine.dispose()
            await one_trip.close()
    for name, times in (("SQLAlchemy's aiosqlite adapter", baseline), ("one-trip adapter", measured)):
        print(f"{name}: p50 {statistics.median(times):.2f} ms per transaction of ten statements")
    print(f"ratio of p50s: {statistics.median(baseline) / statistics.median(measured):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
