"""The one-trip SQLite adapter: results as SQLAlchemy's own adapter gives them, in one trip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import Database, open_database
from shared.sqlite_driver import OneTripDBAPI

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(20), unique=True, nullable=False),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'driver.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.close()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every function aiosqlite runs on its thread."""
    calls: list[str] = []
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return calls


async def test_rows_rowcount_and_returning(db: Database) -> None:
    async with db.engine.begin() as connection:
        ids = await connection.scalars(
            insert(items).returning(items.c.id, sort_by_parameter_order=True),
            [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        )
        assert list(ids) == [1, 2, 3]
        result = await connection.execute(
            update(items).where(items.c.id > 1).values(name=items.c.name + "!")
        )
        assert result.rowcount == 2
        rows = (await connection.execute(select(items).order_by(items.c.id))).all()
    assert [tuple(row) for row in rows] == [(1, "a"), (2, "b!"), (3, "c!")]


async def test_executemany_without_returning(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(insert(items), [{"name": f"n{i}"} for i in range(50)])
        count = await connection.scalar(text("SELECT count(*) FROM items"))
    assert count == 50


async def test_statement_takes_one_trip(db: Database, trips: list[str]) -> None:
    async with db.engine.connect() as connection:
        trips.clear()
        rows = (await connection.execute(select(items.c.id).where(items.c.id < 10))).all()
        assert rows == []
        assert trips == ["_run_statement"]


async def test_errors_keep_connection_usable(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(insert(items), {"name": "same"})
    with pytest.raises(IntegrityError):
        async with db.engine.begin() as connection:
            await connection.execute(insert(items), {"name": "same"})
    with pytest.raises(OperationalError, match="no such table"):
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT * FROM missing"))
    async with db.engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM items")) == 1


async def test_rolled_back_writes_are_gone(db: Database) -> None:
    async with db.engine.connect() as connection:
        await connection.execute(insert(items), {"name": "kept"})
        await connection.commit()
        await connection.execute(insert(items), {"name": "dropped"})
        await connection.rollback()
        names = (await connection.scalars(select(items.c.name))).all()
    assert names == ["kept"]


async def test_server_side_cursors_still_stream(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(insert(items), [{"name": f"s{i}"} for i in range(25)])
    async with db.engine.connect() as connection:
        streamed = [row.name async for row in await connection.stream(select(items.c.name))]
    assert len(streamed) == 25


async def test_async_creator_connects(tmp_path: Path) -> None:
    """An async_creator returns a coroutine, which has no thread to mark as a daemon."""

    async def creator() -> aiosqlite.Connection:
        return await aiosqlite.connect(tmp_path / "creator.db")

    engine = create_async_engine(
        "sqlite+aiosqlite://", module=OneTripDBAPI(), async_creator=creator
    )
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
