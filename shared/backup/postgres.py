"""PostgreSQL backups with the client tools: pg_dump (custom format), pg_restore and psql.

The tools run without a shell, with ``--no-password`` (they never prompt) and a time limit.
The connection goes on the command line as a libpq connection string without the password.
When the URL carries a password, it reaches the tools only through a temporary password file
(mode 0600, deleted afterwards) named by ``PGPASSFILE``, and psycopg gets it as an argument.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from shared.backup.errors import (
    DatabaseAccessError,
    MissingToolError,
    ToolFailedError,
    UnsafeRestoreError,
)
from shared.backup.tables import quote_identifier, split_table_name
from shared.backup.target import DatabaseTarget
from shared.errors import ConfigurationError

logger = logging.getLogger(__name__)

DUMP_TOOLS = ("pg_dump",)
RESTORE_TOOLS = ("pg_restore", "psql")

_USER_TABLES_QUERY = """
SELECT n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)'
ORDER BY 1
"""
_REFERENCING_TABLES_QUERY = """
SELECT DISTINCT conrelid::regclass::text FROM pg_catalog.pg_constraint
WHERE contype = 'f' AND confrelid = to_regclass(%s) AND conrelid <> confrelid
ORDER BY 1
"""
# The serial and identity columns of a table, each with the name of its sequence.
_OWNED_SEQUENCES_QUERY = """
SELECT quote_ident(attname), pg_catalog.pg_get_serial_sequence(%s, attname)
FROM pg_catalog.pg_attribute
WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped
  AND pg_catalog.pg_get_serial_sequence(%s, attname) IS NOT NULL
ORDER BY attnum
"""
_UNCHANGED_AFTER_RESTORE = "the restore ran in one transaction, so the database was not changed"
# Output of a failed tool is cut to its end, where the cause usually is.
_MAX_ERROR_CHARACTERS = 2000


class PostgresBackend:
    """Back up and restore one PostgreSQL database."""

    format = "pg_dump-custom"

    def __init__(self, target: DatabaseTarget, timeout_seconds: float) -> None:
        self.target = target
        self.timeout_seconds = timeout_seconds

    def check_tools(self, names: tuple[str, ...]) -> dict[str, str]:
        """Return the path of each client program in ``names``, or raise MissingToolError."""
        paths = {}
        for name in names:
            found = shutil.which(name)
            if found is None:
                raise MissingToolError(name)
            paths[name] = found
        return paths

    def list_tables(self) -> list[str]:
        """Return the database's tables as ``schema.table``, outside the system schemas."""
        return [row[0] for row in self._fetch_all(_USER_TABLES_QUERY)]

    def table_has_rows(self, table: str) -> bool:
        """Return whether ``table`` (``schema.table``, known to exist) contains any row."""
        rows = self._fetch_all(f"SELECT EXISTS (SELECT 1 FROM {quote_identifier(table)})")
        return bool(rows and rows[0][0])

    def dump(self, output: Path, table: str | None) -> str:
        """Write a custom-format dump of the database, or of ``table``, to ``output``.

        Returns the version line of the pg_dump that wrote it.
        """
        tools = self.check_tools(DUMP_TOOLS)
        argv = [tools["pg_dump"], "--format=custom", "--no-password", f"--file={output}"]
        if table is not None:
            # Quoted, so pg_dump matches the name exactly rather than as a lower-cased pattern.
            argv.append(f"--table={quote_identifier(table)}")
        argv.append(f"--dbname={self.target.conninfo}")
        with self._tool_environment() as environment:
            self._run(argv, environment, "the database was not changed")
        return self._version(tools["pg_dump"])

    def restore_database(self, path: Path) -> None:
        """Replace the objects in the dump at ``path``, in one transaction.

        Objects the dump contains are dropped (if they exist) and created again with their data.
        Objects created after the backup was made are left as they are. Ownership is not
        restored, so the restoring user owns what it creates.
        """
        tools = self.check_tools(RESTORE_TOOLS)
        argv = [
            tools["pg_restore"], "--clean", "--if-exists", "--no-owner", "--single-transaction",
            "--exit-on-error", "--no-password", f"--dbname={self.target.conninfo}", str(path),
        ]
        with self._tool_environment() as environment:
            self._run(argv, environment, _UNCHANGED_AFTER_RESTORE)

    def restore_table(self, path: Path, table: str) -> None:
        """Replace every row of ``table`` (``schema.table``) with its rows in the dump at ``path``.

        pg_restore writes the table's data as an SQL script to a temporary file (mode 0600)
        beside the backup. psql then deletes the current rows and runs the script in one
        transaction. The script goes through a file, not a pipe, so a pg_restore that fails
        half-way never hands psql a truncated script to commit.
        """
        tools = self.check_tools(RESTORE_TOOLS)
        statements = self._row_replacement_statements(table)
        sequence_updates = self._sequence_statements(table)
        schema, name = split_table_name(table, "public")
        descriptor, script_name = tempfile.mkstemp(
            dir=path.parent, prefix=".", suffix=".restore.sql"
        )
        os.close(descriptor)
        script = Path(script_name)
        try:
            with self._tool_environment() as environment:
                self._run(
                    [tools["pg_restore"], "--data-only", f"--schema={schema}", f"--table={name}",
                     f"--file={script}", str(path)],
                    environment,
                    "the database was not changed",
                )
                self._run(
                    [tools["psql"], "--no-psqlrc", "--quiet", "--no-password",
                     "--single-transaction", "--set=ON_ERROR_STOP=1",
                     *[f"--command={statement}" for statement in statements],
                     f"--file={script}",
                     *[f"--command={statement}" for statement in sequence_updates],
                     f"--dbname={self.target.conninfo}"],
                    environment,
                    _UNCHANGED_AFTER_RESTORE,
                )
        finally:
            script.unlink(missing_ok=True)

    def _sequence_statements(self, table: str) -> list[str]:
        """Return the SQL that moves each sequence of ``table`` past its restored values.

        pg_restore with --table restores rows but not the sequence values a whole dump sets.
        A table created again since the backup would otherwise hand out ids that the restored
        rows already use. A sequence that is already further on is left where it is.
        """
        quoted = quote_identifier(table)
        owned = self._fetch_all(_OWNED_SEQUENCES_QUERY, (quoted, quoted, quoted))
        statements = []
        for column, sequence in owned:
            literal = "'" + sequence.replace("'", "''") + "'"
            statements.append(
                f"SELECT pg_catalog.setval({literal}, GREATEST(max({column}), "
                f"(SELECT last_value FROM {sequence}))) FROM ONLY {quoted} "
                f"HAVING max({column}) IS NOT NULL"
            )
        return statements

    def _row_replacement_statements(self, table: str) -> list[str]:
        """Return the SQL that empties ``table`` before its rows are loaded again.

        Deleting rows would cascade into, or be blocked by, tables whose foreign keys point at
        this one. A superuser turns those checks off for the transaction, as pg_restore's
        --disable-triggers does, so the other tables stay untouched. Anyone else gets an error.
        """
        referencing = [
            row[0] for row in self._fetch_all(_REFERENCING_TABLES_QUERY, (quote_identifier(table),))
        ]
        is_superuser = self._fetch_all("SELECT current_setting('is_superuser')") == [("on",)]
        delete = f"DELETE FROM ONLY {quote_identifier(table)}"
        if not referencing:
            return [delete]
        if is_superuser:
            return ["SET LOCAL session_replication_role = replica", delete]
        raise UnsafeRestoreError(
            f"cannot restore only table {table!r}: foreign keys of {', '.join(referencing)} "
            "refer to it, and replacing its rows would change those tables; restore the whole "
            "backup, or connect as a superuser (which restores the rows with the checks off)"
        )

    def _fetch_all(self, query: str, parameters: tuple[str, ...] = ()) -> list[tuple]:
        """Run one read-only query on a new connection and return its rows."""
        extra = {"password": self.target.password} if self.target.password else {}
        try:
            connection = psycopg.connect(self.target.conninfo, autocommit=True, **extra)
        except psycopg.Error as exc:
            raise DatabaseAccessError(
                f"cannot connect to {self.target.description}: "
                f"{self.target.scrub(str(exc)).strip()}; check the URL and that the server runs"
            ) from None
        try:
            with connection:
                return connection.execute(query, parameters).fetchall()
        except psycopg.Error as exc:
            raise DatabaseAccessError(
                f"query on {self.target.description} failed: "
                f"{self.target.scrub(str(exc)).strip()}; check that the URL's user may read "
                "the tables"
            ) from None

    @contextlib.contextmanager
    def _tool_environment(self) -> Iterator[dict[str, str]]:
        """Yield the environment of a client program, with a password file when one is needed."""
        environment = dict(os.environ)
        password = self.target.password
        if password is None:
            yield environment
            return
        if "\n" in password or "\r" in password:
            raise ConfigurationError(
                "the database password contains a line break, which a PostgreSQL password "
                "file cannot hold; choose a password without one"
            )
        # PGPASSWORD would win over the file, so a stale one from the caller is dropped.
        environment.pop("PGPASSWORD", None)
        descriptor, name = tempfile.mkstemp(prefix="travi-pgpass-")
        try:
            escaped = password.replace("\\", "\\\\").replace(":", "\\:")
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(f"*:*:*:*:{escaped}\n")
            environment["PGPASSFILE"] = name
            yield environment
        finally:
            Path(name).unlink(missing_ok=True)

    def _run(self, argv: list[str], environment: dict[str, str], outcome: str) -> None:
        tool = Path(argv[0]).name
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Running %s for %s.", tool, self.target.description)
        try:
            completed = subprocess.run(
                argv, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                errors="replace", timeout=self.timeout_seconds, check=False,
            )
        except subprocess.TimeoutExpired:
            raise ToolFailedError(
                tool, f"timed out after {self.timeout_seconds:g} s and was stopped",
                f"raise the limit with TRAVI_BACKUP__TIMEOUT_SECONDS ({outcome})",
            ) from None
        except OSError as exc:
            raise MissingToolError(tool) from exc
        if completed.returncode != 0:
            output = self.target.scrub(completed.stderr.strip())[-_MAX_ERROR_CHARACTERS:]
            raise ToolFailedError(
                tool, f"exit status {completed.returncode}: {output}", _hint(output, outcome)
            )

    def _version(self, tool: str) -> str:
        completed = subprocess.run(
            [tool, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        return completed.stdout.strip()


def _hint(output: str, outcome: str) -> str:
    if "version mismatch" in output or "unsupported version" in output:
        return (
            "install PostgreSQL client tools at least as new as the server, "
            "and put their folder first on PATH"
        )
    if "other objects depend on" in output:
        return (
            "objects created after the backup depend on the tables it restores: drop them, or "
            f"restore into an empty database ({outcome})"
        )
    if "connection to server" in output or "password authentication failed" in output:
        return f"check the database URL and that the server accepts connections ({outcome})"
    return outcome
