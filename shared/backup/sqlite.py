"""SQLite backups with the online backup API of Python's sqlite3 module.

A whole-database backup is a page-by-page copy made by ``sqlite3.Connection.backup``, which is
consistent while other connections write. A single-table backup is an SQLite file that contains
only that table. Backup files are always in rollback-journal mode and opened read-only and
``immutable``, so reading one never creates ``-wal`` or ``-shm`` files or changes its checksum.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from shared.backup.errors import DatabaseAccessError, TableNotFoundError, UnsafeRestoreError
from shared.backup.tables import quote_identifier
from shared.backup.target import DatabaseTarget

logger = logging.getLogger(__name__)


class SqliteBackend:
    """Back up and restore one SQLite database file."""

    format = "sqlite"

    def __init__(self, target: DatabaseTarget, timeout_seconds: float) -> None:
        assert target.sqlite_path is not None
        self.target = target
        self.path = target.sqlite_path
        self.timeout_seconds = timeout_seconds

    def check_tools(self, names: tuple[str, ...]) -> dict[str, str]:
        """Return no programs: SQLite backups need only the sqlite3 module."""
        return {}

    def list_tables(self) -> list[str]:
        """Return the database's tables, without SQLite's internal ones; none for a missing file."""
        if not self.path.exists():
            return []
        with self._open(_read_only_uri(self.path)) as connection:
            return _tables(connection, "main")

    def table_has_rows(self, table: str) -> bool:
        """Return whether ``table`` (known to exist) contains any row."""
        with self._open(_read_only_uri(self.path)) as connection:
            query = f"SELECT EXISTS (SELECT 1 FROM {quote_identifier(table)})"
            row = connection.execute(query).fetchone()
        return bool(row and row[0])

    def dump(self, output: Path, table: str | None) -> str:
        """Write a copy of the database, or of ``table`` alone, to ``output``.

        Returns the version of the SQLite library that wrote it.
        """
        if not self.path.is_file():
            raise DatabaseAccessError(
                f"SQLite database {self.path} does not exist: check TRAVI_BACKUP__DATABASE_URL"
            )
        with self._open(str(output)) as destination:
            if table is None:
                with self._open(_read_only_uri(self.path)) as source:
                    source.backup(destination, progress=self._deadline("backup"))
            else:
                _copy_table(destination, _read_only_uri(self.path), table)
            # A copy of a WAL database is in WAL mode too, and opening such a file may write
            # beside it. Rollback-journal mode keeps the file as it was when it was checksummed.
            destination.execute("PRAGMA journal_mode=DELETE")
        return f"SQLite {sqlite3.sqlite_version}"

    def restore_database(self, path: Path) -> None:
        """Replace the whole database with the backup at ``path``, in one step.

        The backup API copies every page under a write lock, so other connections see either
        the old database or the restored one.
        """
        with self._open(_immutable_uri(path)) as source, self._open(str(self.path)) as destination:
            source.backup(destination, progress=self._deadline("restore"))

    def restore_table(self, path: Path, table: str) -> None:
        """Replace every row of ``table`` with its rows in the backup at ``path``, atomically.

        Foreign keys stay off on this connection (SQLite's default), so deleting the rows does
        not cascade into other tables and other tables' rows are never checked or changed.
        """
        # NOTE: triggers on the table still fire for the deleted and inserted rows; SQLite has
        # no switch to turn them off for one connection.
        with self._open(str(self.path)) as connection:
            connection.execute("ATTACH DATABASE ? AS backup", (_immutable_uri(path),))
            columns = _insertable_columns(connection, "main", table)
            backup_columns = _insertable_columns(connection, "backup", table)
            if columns != backup_columns:
                raise UnsafeRestoreError(
                    f"table {table!r} has columns {', '.join(columns)} in the database but "
                    f"{', '.join(backup_columns)} in the backup; restore the whole backup instead"
                )
            column_list = ", ".join(quote_identifier(column) for column in columns)
            quoted = quote_identifier(table)
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(f"DELETE FROM main.{quoted}")
                connection.execute(
                    f"INSERT INTO main.{quoted} ({column_list}) "
                    f"SELECT {column_list} FROM backup.{quoted}"
                )
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            connection.execute("DETACH DATABASE backup")

    def _deadline(self, operation: str) -> Callable[[int, int, int], None]:
        """Return a progress callback that stops a backup API copy after ``timeout_seconds``.

        ``Connection.backup`` (CPython 3.11, Modules/_sqlite/connection.c) retries a locked
        database without end and calls the callback after every attempt, so this callback is
        what bounds the wait.
        """
        deadline = time.monotonic() + self.timeout_seconds

        def check(_status: int, _remaining: int, _total: int) -> None:
            if time.monotonic() > deadline:
                raise DatabaseAccessError(
                    f"SQLite {operation} of {self.target.description} timed out after "
                    f"{self.timeout_seconds:g} s waiting for a lock held by another connection; "
                    "retry when the application is idle, or raise TRAVI_BACKUP__TIMEOUT_SECONDS"
                )

        return check

    @contextlib.contextmanager
    def _open(self, database: str) -> Iterator[sqlite3.Connection]:
        """Open ``database`` (a path or a ``file:`` URI) in autocommit mode, then close it."""
        try:
            connection = sqlite3.connect(
                database, timeout=self.timeout_seconds, uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise DatabaseAccessError(f"cannot open SQLite database {database}: {exc}") from None
        try:
            yield connection
        except sqlite3.Error as exc:
            hint = "the database file was not changed"
            if "locked" in str(exc) or "busy" in str(exc):
                hint += (
                    "; retry when the application is idle, or raise TRAVI_BACKUP__TIMEOUT_SECONDS"
                )
            raise DatabaseAccessError(
                f"SQLite operation on {self.target.description} failed: {exc}; {hint}"
            ) from exc
        finally:
            connection.close()


def _copy_table(destination: sqlite3.Connection, source_uri: str, table: str) -> None:
    """Create ``table`` in ``destination`` and copy its rows from the attached source."""
    destination.execute("ATTACH DATABASE ? AS source", (source_uri,))
    # One read transaction, so the definition and the rows come from the same snapshot.
    destination.execute("BEGIN")
    row = destination.execute(
        "SELECT sql FROM source.sqlite_schema WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if row is None or row[0] is None:
        raise TableNotFoundError(f"table {table!r} not found in the SQLite database")
    destination.execute(row[0])
    columns = _insertable_columns(destination, "source", table)
    column_list = ", ".join(quote_identifier(column) for column in columns)
    quoted = quote_identifier(table)
    destination.execute(
        f"INSERT INTO main.{quoted} ({column_list}) SELECT {column_list} FROM source.{quoted}"
    )
    destination.execute("COMMIT")
    destination.execute("DETACH DATABASE source")


def _tables(connection: sqlite3.Connection, schema: str) -> list[str]:
    rows = connection.execute(
        f"SELECT name FROM {schema}.sqlite_schema WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    )
    return [row[0] for row in rows]


def _insertable_columns(connection: sqlite3.Connection, schema: str, table: str) -> list[str]:
    """Return the columns of ``table`` that take values, leaving out generated ones."""
    rows = connection.execute(f"PRAGMA {schema}.table_xinfo({quote_identifier(table)})").fetchall()
    # The 7th column of table_xinfo, "hidden", is 0 for ordinary columns and 2 or 3 for
    # generated ones.
    return [row[1] for row in rows if row[6] == 0]


def _read_only_uri(path: Path) -> str:
    return f"{path.as_uri()}?mode=ro"


def _immutable_uri(path: Path) -> str:
    return f"{path.as_uri()}?mode=ro&immutable=1"
