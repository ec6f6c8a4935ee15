"""An aiosqlite adapter for SQLAlchemy that runs each statement in one trip to SQLite's thread.

aiosqlite runs every call on a thread of its own and wakes the event loop when the call ends.
SQLAlchemy 2.1's adapter makes up to four such trips per statement: create a cursor, execute,
fetch the rows, close the cursor. This adapter does all four in one function on aiosqlite's
thread, so a statement costs one trip. Server-side cursors, commits and rollbacks are left to
SQLAlchemy's adapter.

It reaches into aiosqlite's ``Connection._execute`` and ``Connection._conn``, which is why
pyproject.toml pins aiosqlite below 0.23. SQLAlchemy's own adapter uses the same internals.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from threading import Thread
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# The result of one trip: description, rows, rowcount and lastrowid.
_Outcome = tuple[Any, list[Any], int, int | None]


def _run_statement(
    connection: aiosqlite.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """Run one statement on aiosqlite's thread and return everything SQLAlchemy reads."""
    cursor = connection._conn.cursor()  # noqa: SLF001 - see the module docstring.
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement, rows and close take one trip."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # The base class would create the sqlite3 cursor here, in a trip of its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection  # noqa: SLF001
        self._cursor = None
        self._rows = collections.deque()
        self._soft_closed_memoized = EMPTY_DICT
        self._description = None
        self._rowcount = -1
        self._lastrowid = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        """The columns of the last statement's rows, or None."""
        return self._description

    @property
    def rowcount(self) -> int:
        """The rows the last statement changed, as sqlite3 counts them."""
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:  # type: ignore[override]
        """The row id of the last inserted row."""
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        """How many rows ``fetchmany`` returns by default."""
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing to close: the sqlite3 cursor was closed in the statement's trip."""

    def close(self) -> None:
        """Drop rows not fetched; the sqlite3 cursor is already closed."""
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._run(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        await self._run(operation, seq_of_parameters, many=True)

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:  # noqa: SLF001
            outcome = await self._connection._execute(  # noqa: SLF001
                _run_statement, self._connection, operation, parameters, many
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection with :class:`OneTripCursor` as its cursor."""

    __slots__ = ()

    _cursor_cls = OneTripCursor


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to pass to ``create_async_engine(module=...)``."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        """Open an aiosqlite connection whose thread does not keep the process alive."""
        creator = kw.pop("async_creator_fn", None)
        if creator:
            # An async_creator returns a coroutine, and the creator owns its thread, as in
            # SQLAlchemy's adapter.
            return OneTripConnection(self, await_(creator(*arg, **kw)))
        connection = aiosqlite.connect(*arg, **kw)
        thread = connection if isinstance(connection, Thread) else connection._thread  # noqa: SLF001
        thread.daemon = True
        return OneTripConnection(self, await_(connection))
