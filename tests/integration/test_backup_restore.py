"""Backups and restores on a real SQLite file and a real PostgreSQL database.

The table helpers at the top are shared with the other backup test modules.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from shared.backup import (
    BackupNotFoundError,
    ChecksumMismatchError,
    DatabaseAccessError,
    DatabaseNotEmptyError,
    MissingToolError,
    TableNotFoundError,
    ToolFailedError,
    UnsafeRestoreError,
    UnsupportedDatabaseError,
    create_backup,
    list_backups,
    restore_backup,
)
from shared.backup.catalog import sidecar_path
from shared.errors import InvalidName

# Every byte value, text outside ASCII with quotes and control characters, and NULLs, so that
# "the same rows" means the same bytes.
ITEMS = [
    (1, "plain", bytes(range(256)), 12.5, "2026-12-04T15:30:00Z"),
    (2, "naïve ☃ 'quoted' \"double\" \t\\ tab", bytes(range(255, -1, -1)) * 3, -0.25, None),
    (3, "", b"", 0.0, "x"),
    (4, "nulls", None, None, None),
    (5, "large", bytes(i * 7 % 256 for i in range(70_000)), 1e300, "end"),
]
OTHERS = [(1, "first other"), (2, "second other")]


@contextmanager
def connect(url: str) -> Iterator[Any]:
    """Open a DB-API connection in autocommit mode to the test database at ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with closing(sqlite3.connect(parsed.database, isolation_level=None)) as connection:
            yield connection
    else:
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as connection:
            yield connection


def is_sqlite(url: str) -> bool:
    """Return whether ``url`` is an SQLite URL."""
    return make_url(url).get_backend_name() == "sqlite"


def create_tables(url: str) -> None:
    """Create ``items`` and ``other`` and fill them with ITEMS and OTHERS."""
    binary, number = ("BLOB", "REAL") if is_sqlite(url) else ("BYTEA", "DOUBLE PRECISION")
    placeholder = "?" if is_sqlite(url) else "%s"
    with connect(url) as connection:
        if is_sqlite(url):
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            f"CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload {binary}, "
            f"price {number}, note TEXT)"
        )
        connection.execute("CREATE TABLE other (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
        cursor = connection.cursor()
        cursor.executemany(f"INSERT INTO items VALUES ({', '.join([placeholder] * 5)})", ITEMS)
        cursor.executemany(f"INSERT INTO other VALUES ({placeholder}, {placeholder})", OTHERS)


def rows(url: str, table: str) -> list[tuple[Any, ...]]:
    """Return every row of ``table`` ordered by id, with binary values as ``bytes``."""
    with connect(url) as connection:
        fetched = connection.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    return [tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
            for row in fetched]


def execute(url: str, statement: str) -> None:
    """Run one SQL statement on ``url``."""
    with connect(url) as connection:
        connection.execute(statement)


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    """The backup folder of one test."""
    return tmp_path / "backups"


@pytest.fixture
def filled_url(database_url: str) -> str:
    """A database (SQLite, then PostgreSQL) with the tables ``items`` and ``other`` filled."""
    create_tables(database_url)
    return database_url


def test_restore_latest_brings_rows_back(filled_url: str, backups: Path) -> None:
    before_items = rows(filled_url, "items")
    create_backup(filled_url, backups)
    execute(filled_url, "DELETE FROM items WHERE id IN (2, 5)")
    execute(filled_url, "UPDATE other SET label = 'changed'")

    restore_backup(filled_url, backups, latest=True, force=True)

    assert before_items == ITEMS
    assert rows(filled_url, "items") == before_items
    assert rows(filled_url, "other") == OTHERS


def test_restore_into_empty_database_needs_no_force(
    filled_url: str, backups: Path, tmp_path: Path
) -> None:
    backup = create_backup(filled_url, backups)
    if is_sqlite(filled_url):
        empty_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        execute(filled_url, "DROP TABLE items")
        execute(filled_url, "DROP TABLE other")
        empty_url = filled_url

    restore_backup(empty_url, backups, name=backup.name)

    assert rows(empty_url, "items") == ITEMS
    assert rows(empty_url, "other") == OTHERS


def test_altered_backup_rejected(filled_url: str, backups: Path) -> None:
    backup = create_backup(filled_url, backups)
    execute(filled_url, "DELETE FROM items")
    content = bytearray(backup.path.read_bytes())
    content[len(content) // 2] ^= 0x01
    backup.path.write_bytes(bytes(content))

    with pytest.raises(ChecksumMismatchError) as caught:
        restore_backup(filled_url, backups, latest=True, force=True)

    assert backup.name in str(caught.value)
    assert "altered or damaged" in str(caught.value)
    assert rows(filled_url, "items") == []
    assert list_backups(backups)[0].checksum_status == "mismatch"


def test_restore_one_table_from_full_backup(filled_url: str, backups: Path) -> None:
    create_backup(filled_url, backups)
    execute(filled_url, "DELETE FROM items WHERE id > 1")
    execute(filled_url, "UPDATE other SET label = 'changed after the backup' WHERE id = 1")
    execute(filled_url, "INSERT INTO other VALUES (3, 'added after the backup')")
    other_before = rows(filled_url, "other")

    restore_backup(filled_url, backups, latest=True, table="items", force=True)

    assert rows(filled_url, "items") == ITEMS
    assert rows(filled_url, "other") == other_before


def test_table_backup_restores_its_table(filled_url: str, backups: Path) -> None:
    backup = create_backup(filled_url, backups, table="items")
    execute(filled_url, "DELETE FROM items")
    execute(filled_url, "DELETE FROM other")

    restore_backup(filled_url, backups, name=backup.name)

    assert backup.table in ("items", "public.items")
    assert backup.tables == [backup.table]
    assert rows(filled_url, "items") == ITEMS
    assert rows(filled_url, "other") == []


def test_latest_with_table_uses_table_backup(filled_url: str, backups: Path) -> None:
    create_backup(filled_url, backups)
    execute(filled_url, "DELETE FROM items WHERE id = 1")
    table_backup = create_backup(filled_url, backups, table="items")
    execute(filled_url, "DELETE FROM items")

    restored = restore_backup(filled_url, backups, latest=True, table="items", force=True)

    assert restored.name == table_backup.name
    assert rows(filled_url, "items") == ITEMS[1:]


def test_latest_without_table_skips_table_backups(filled_url: str, backups: Path) -> None:
    full = create_backup(filled_url, backups)
    create_backup(filled_url, backups, table="items")
    restored = restore_backup(filled_url, backups, latest=True, force=True)
    assert restored.name == full.name


def test_non_empty_database_refused_without_force(filled_url: str, backups: Path) -> None:
    create_backup(filled_url, backups)
    execute(filled_url, "DELETE FROM items WHERE id = 1")

    with pytest.raises(DatabaseNotEmptyError, match="pass --yes"):
        restore_backup(filled_url, backups, latest=True)
    with pytest.raises(DatabaseNotEmptyError, match="has rows"):
        restore_backup(filled_url, backups, latest=True, table="other")

    assert rows(filled_url, "items") == ITEMS[1:]


def test_empty_table_restored_without_force(filled_url: str, backups: Path) -> None:
    create_backup(filled_url, backups)
    execute(filled_url, "DELETE FROM other")
    restore_backup(filled_url, backups, latest=True, table="other")
    assert rows(filled_url, "other") == OTHERS


def test_backup_files_and_sidecar(filled_url: str, backups: Path) -> None:
    backup = create_backup(filled_url, backups)
    sidecar = json.loads(sidecar_path(backup.path).read_text())
    extension = ".sqlite" if is_sqlite(filled_url) else ".dump"

    assert backup.name.endswith(extension)
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    assert sidecar["size"] == backup.path.stat().st_size
    assert len(sidecar["sha256"]) == 64
    assert sidecar["database"] == backup.database
    assert [table.rpartition(".")[2] for table in sidecar["tables"]] == ["items", "other"]
    assert sidecar["format"] == backup.format
    assert sorted(path.name for path in backups.iterdir()) == [backup.name, backup.name + ".json"]


def test_retention_keeps_newest(filled_url: str, backups: Path) -> None:
    older = [create_backup(filled_url, backups, keep=2) for _ in range(4)]
    table_backup = create_backup(filled_url, backups, table="other", keep=2)
    last = create_backup(filled_url, backups, keep=1)

    names = {info.name for info in list_backups(backups)}

    assert names == {table_backup.name, last.name}
    assert older[-1].name not in names
    assert not sidecar_path(older[0].path).exists()


def test_unknown_table_rejected(filled_url: str, backups: Path) -> None:
    with pytest.raises(TableNotFoundError, match="'missing' not found"):
        create_backup(filled_url, backups, table="missing")
    backup = create_backup(filled_url, backups, table="other")
    with pytest.raises(TableNotFoundError, match="'items' not found in backup"):
        restore_backup(filled_url, backups, name=backup.name, table="items", force=True)
    assert not [path for path in backups.iterdir() if path.name.startswith(".")]


def test_invalid_table_name_rejected(filled_url: str, backups: Path) -> None:
    with pytest.raises(InvalidName, match="invalid table"):
        create_backup(filled_url, backups, table="items; DROP TABLE other")
    assert rows(filled_url, "other") == OTHERS


def test_table_dropped_since_backup(filled_url: str, backups: Path) -> None:
    create_backup(filled_url, backups)
    execute(filled_url, "DROP TABLE other")
    with pytest.raises(TableNotFoundError, match="create the table first"):
        restore_backup(filled_url, backups, latest=True, table="other", force=True)


def test_unknown_and_unsafe_names(filled_url: str, backups: Path) -> None:
    create_backup(filled_url, backups)
    with pytest.raises(BackupNotFoundError, match="no backup named"):
        restore_backup(filled_url, backups, name="20200101T000000000Z-app.dump")
    with pytest.raises(InvalidName, match="without a path"):
        restore_backup(filled_url, backups, name="../../etc/passwd")


def test_latest_ignores_other_databases(filled_url: str, backups: Path, tmp_path: Path) -> None:
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    execute(other_url, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
    create_backup(other_url, backups)
    with pytest.raises(BackupNotFoundError, match="none of the 1 backups"):
        restore_backup(filled_url, backups, latest=True, force=True)


def test_latest_in_empty_folder(filled_url: str, backups: Path) -> None:
    with pytest.raises(BackupNotFoundError, match="make one with 'travi db backup'"):
        restore_backup(filled_url, backups, latest=True)


@pytest.mark.postgres
def test_backup_of_other_kind_rejected(postgres_url: str, backups: Path, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'other.db'}"
    create_tables(sqlite_url)
    create_tables(postgres_url)
    sqlite_backup = create_backup(sqlite_url, backups)
    postgres_backup = create_backup(postgres_url, backups)

    with pytest.raises(UnsupportedDatabaseError, match="in sqlite format"):
        restore_backup(postgres_url, backups, name=sqlite_backup.name, force=True)
    with pytest.raises(UnsupportedDatabaseError, match="in pg_dump-custom format"):
        restore_backup(sqlite_url, backups, name=postgres_backup.name, force=True)


def test_sqlite_missing_file_rejected(backups: Path, tmp_path: Path) -> None:
    with pytest.raises(DatabaseAccessError, match="does not exist"):
        create_backup(f"sqlite:///{tmp_path / 'absent.db'}", backups)
    assert not (tmp_path / "absent.db").exists()


def test_sqlite_backup_file_stays_unchanged(tmp_path: Path, backups: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_tables(url)
    backup = create_backup(url, backups)
    restore_backup(url, backups, name=backup.name, force=True)
    restore_backup(url, backups, name=backup.name, table="items", force=True)
    assert list_backups(backups)[0].checksum_status == "ok"
    assert sorted(path.name for path in backups.iterdir()) == [backup.name, backup.name + ".json"]
    with connect(url) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_column_change_rejected(tmp_path: Path, backups: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_tables(url)
    create_backup(url, backups)
    execute(url, "ALTER TABLE other ADD COLUMN added TEXT")
    with pytest.raises(UnsafeRestoreError, match="restore the whole backup instead"):
        restore_backup(url, backups, latest=True, table="other", force=True)
    assert [row[:2] for row in rows(url, "other")] == OTHERS


def test_missing_tools_named(
    monkeypatch: pytest.MonkeyPatch, backups: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(MissingToolError) as caught:
        create_backup("postgresql://app:hunter22@127.0.0.1:1/shop", backups)
    assert caught.value.tool == "pg_dump"
    assert "postgresql-client" in str(caught.value)
    assert not backups.exists()


@pytest.mark.postgres
def test_postgres_restore_needs_tools(
    postgres_url: str, backups: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_tables(postgres_url)
    backup = create_backup(postgres_url, backups)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(MissingToolError, match="pg_restore not found on PATH"):
        restore_backup(postgres_url, backups, name=backup.name, force=True)


@pytest.mark.postgres
def test_postgres_password_only_in_password_file(
    postgres_url: str,
    backups: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The test server trusts loopback connections, so it accepts any password. This test
    # checks where the password travels, not whether the server accepts it.
    password = "Pw:with\\odd'chars-7731"
    url = postgres_url.replace(
        "postgresql://postgres@", "postgresql://postgres:Pw%3Awith%5Codd%27chars-7731@"
    )
    create_tables(postgres_url)
    monkeypatch.setenv("PGPASSWORD", "stale-from-caller")
    calls: list[tuple[list[str], str]] = []
    original_run = subprocess.run

    def recording_run(argv: list[str], *args: object, **kwargs: object) -> object:
        environment = kwargs.get("env") or {}
        passfile = environment.get("PGPASSFILE")  # type: ignore[union-attr]
        if passfile:
            assert stat.S_IMODE(os.stat(passfile).st_mode) == 0o600
            calls.append((list(argv), Path(passfile).read_text()))
            assert "PGPASSWORD" not in environment  # type: ignore[operator]
        return original_run(argv, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess, "run", recording_run)
    caplog.set_level(logging.DEBUG)
    backup = create_backup(url, backups)
    restore_backup(url, backups, name=backup.name, force=True)
    restore_backup(url, backups, name=backup.name, table="items", force=True)

    tools = [Path(argv[0]).name for argv, _ in calls]
    assert tools == ["pg_dump", "pg_restore", "pg_restore", "psql"]
    for argv, passfile_text in calls:
        assert not any("7731" in argument for argument in argv)
        assert passfile_text == "*:*:*:*:Pw\\:with\\\\odd'chars-7731\n"
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("travi-pgpass-*"))
    assert password not in caplog.text
    assert "7731" not in sidecar_path(backup.path).read_text()
    assert "7731" not in repr(backup)


@pytest.mark.postgres
def test_postgres_error_hides_password(postgres_url: str, backups: Path) -> None:
    url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:hunter22@")
    url = url.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(DatabaseAccessError) as caught:
        create_backup(url, backups)
    assert "hunter22" not in str(caught.value)
    assert "no_such_database_here" in str(caught.value)


@pytest.mark.postgres
def test_postgres_timeout_stops_pg_dump(postgres_url: str, backups: Path) -> None:
    create_tables(postgres_url)
    with connect(postgres_url) as blocker:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(ToolFailedError, match="timed out after 1 s") as caught:
            create_backup(postgres_url, backups, timeout_seconds=1)
        blocker.execute("ROLLBACK")
    assert "TRAVI_BACKUP__TIMEOUT_SECONDS" in str(caught.value)
    assert list(backups.iterdir()) == []


@pytest.mark.postgres
def test_postgres_referenced_table_keeps_children(postgres_url: str, backups: Path) -> None:
    create_tables(postgres_url)
    execute(postgres_url, "CREATE TABLE child (id INTEGER PRIMARY KEY, "
                          "item_id INTEGER REFERENCES items (id) ON DELETE CASCADE)")
    execute(postgres_url, "INSERT INTO child VALUES (1, 1), (2, 5)")
    create_backup(postgres_url, backups)
    execute(postgres_url, "UPDATE items SET name = 'changed'")

    restore_backup(postgres_url, backups, latest=True, table="items", force=True)

    assert rows(postgres_url, "items") == ITEMS
    assert rows(postgres_url, "child") == [(1, 1), (2, 5)]


@pytest.mark.postgres
def test_postgres_schema_qualified_table(postgres_url: str, backups: Path) -> None:
    create_tables(postgres_url)
    execute(postgres_url, "CREATE SCHEMA archive")
    execute(postgres_url, "CREATE TABLE archive.items (id INTEGER PRIMARY KEY, note TEXT)")
    execute(postgres_url, "INSERT INTO archive.items VALUES (1, 'archived')")
    with pytest.raises(TableNotFoundError, match="ambiguous"):
        create_backup(postgres_url, backups, table="items")
    backup = create_backup(postgres_url, backups, table="archive.items")
    execute(postgres_url, "DELETE FROM archive.items")
    restore_backup(postgres_url, backups, name=backup.name)
    assert backup.name.endswith("-archive_items.dump")
    assert rows(postgres_url, "archive.items") == [(1, "archived")]
    assert rows(postgres_url, "items") == ITEMS


def test_sqlite_restore_times_out_on_lock(tmp_path: Path, backups: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_tables(url)
    backup = create_backup(url, backups)
    with connect(url) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM other")
        with pytest.raises(DatabaseAccessError, match="timed out after 0.5 s"):
            restore_backup(url, backups, name=backup.name, force=True, timeout_seconds=0.5)
        with pytest.raises(DatabaseAccessError, match="database is locked"):
            restore_backup(
                url, backups, name=backup.name, table="items", force=True, timeout_seconds=0.5
            )
        writer.execute("ROLLBACK")
    assert rows(url, "other") == OTHERS
    assert rows(url, "items") == ITEMS


@pytest.mark.postgres
def test_postgres_failed_restore_changes_nothing(postgres_url: str, backups: Path) -> None:
    create_tables(postgres_url)
    backup = create_backup(postgres_url, backups)
    execute(postgres_url, "DELETE FROM items WHERE id = 1")
    # A table made after the backup whose foreign key blocks dropping ``items``.
    execute(postgres_url, "CREATE TABLE later (id INTEGER REFERENCES items (id))")
    execute(postgres_url, "INSERT INTO later VALUES (2)")

    with pytest.raises(ToolFailedError) as caught:
        restore_backup(postgres_url, backups, name=backup.name, force=True)

    assert caught.value.tool == "pg_restore"
    assert "drop them, or restore into an empty database" in str(caught.value)
    assert "the database was not changed" in str(caught.value)
    assert rows(postgres_url, "items") == ITEMS[1:]
    assert rows(postgres_url, "other") == OTHERS


@pytest.mark.postgres
def test_postgres_ordinary_user(postgres_url: str, backups: Path) -> None:
    role = f"travi_backup_{uuid.uuid4().hex[:12]}"
    user_url = postgres_url.replace("postgresql://postgres@", f"postgresql://{role}@")
    execute(postgres_url, f"CREATE ROLE {role} LOGIN")
    try:
        execute(postgres_url, f"GRANT CREATE ON SCHEMA public TO {role}")
        execute(postgres_url, "CREATE TABLE secret (id INTEGER PRIMARY KEY)")
        execute(postgres_url, "INSERT INTO secret VALUES (1)")
        full_backup = create_backup(postgres_url, backups)
        create_tables(user_url)
        execute(user_url, "CREATE TABLE child (id INTEGER PRIMARY KEY, "
                          "item_id INTEGER REFERENCES items (id))")
        execute(user_url, "INSERT INTO child VALUES (1, 1)")
        create_backup(user_url, backups, table="items")

        with pytest.raises(UnsafeRestoreError, match="foreign keys of child refer to it"):
            restore_backup(user_url, backups, latest=True, table="items", force=True)
        with pytest.raises(DatabaseAccessError, match="permission denied for table secret"):
            restore_backup(user_url, backups, name=full_backup.name, table="secret")
        assert rows(user_url, "child") == [(1, 1)]
        assert rows(user_url, "items") == ITEMS
    finally:
        execute(postgres_url, f"DROP OWNED BY {role}")
        execute(postgres_url, f"DROP ROLE {role}")
