"""The three operations of the backup library: create, list and restore.

All of them block. Async code calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from shared.backup.catalog import (
    NAME_PATTERN,
    BackupInfo,
    expired_backups,
    file_sha256,
    list_backups,
    parse_stamp,
    publish_file,
    remove_backup,
    verified_backup,
    write_sidecar,
)
from shared.backup.errors import (
    BackupNotFoundError,
    DatabaseNotEmptyError,
    TableNotFoundError,
    UnsupportedDatabaseError,
)
from shared.backup.postgres import DUMP_TOOLS, RESTORE_TOOLS, PostgresBackend
from shared.backup.sqlite import SqliteBackend
from shared.backup.tables import resolve_table, validate_table_name
from shared.backup.target import DatabaseTarget, file_label, parse_database_url
from shared.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_KEEP = 10
DEFAULT_TIMEOUT_SECONDS = 3600.0


def create_backup(
    database_url: str,
    directory: Path,
    *,
    table: str | None = None,
    keep: int = DEFAULT_KEEP,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> BackupInfo:
    """Back up the database at ``database_url`` (or one ``table`` of it) into ``directory``.

    Then keep only the newest ``keep`` backups of the same database and table; the new backup
    is never removed. ``timeout_seconds`` limits each client program (PostgreSQL) or the busy
    wait for a lock (SQLite). Raises a BackupError subclass whose message names the fix.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    target = parse_database_url(database_url)
    backend = _backend(target, timeout_seconds)
    backend.check_tools(DUMP_TOOLS)
    tables = backend.list_tables()
    selected = None
    if table is not None:
        selected = resolve_table(table, tables, f"the database {target.description}")

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = datetime.now(UTC)
    label = target.name
    if selected is not None:
        label += "-" + file_label(selected.removeprefix("public."))
    descriptor, temporary_name = tempfile.mkstemp(dir=directory, prefix=".", suffix=".partial")
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        tool_version = backend.dump(temporary, selected)
        _sync(temporary)
        path = publish_file(temporary, directory, started, label, backend.format)
    finally:
        temporary.unlink(missing_ok=True)

    info = BackupInfo(
        name=path.name,
        path=path,
        created_at=parse_stamp(NAME_PATTERN.match(path.name)["stamp"]),  # type: ignore[index]
        size=path.stat().st_size,
        sha256=file_sha256(path),
        database=target.description,
        tables=[selected] if selected is not None else tables,
        table=selected,
        format=backend.format,
        tool_version=tool_version,
        checksum_status="ok",
    )
    try:
        write_sidecar(info)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    logger.info(
        "Backup %s of %s created: %d bytes, SHA-256 %s.",
        info.name, target.description, info.size, info.sha256,
    )
    _apply_retention(directory, keep, info)
    return info


def restore_backup(
    database_url: str,
    directory: Path,
    *,
    name: str | None = None,
    latest: bool = False,
    table: str | None = None,
    force: bool = False,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> BackupInfo:
    """Restore the backup ``name``, or the newest one (``latest``), into ``database_url``.

    The backup's size and SHA-256 are checked first. With ``table``, only that table's rows
    are replaced and other tables stay untouched. A backup made with a table restores that
    table. Without ``force``, a database that has tables, or a table that has rows, is not
    overwritten. ``latest`` picks the newest backup of this database that contains what is
    requested: a whole-database backup, or with ``table`` any backup containing that table.
    """
    if (name is None) == (not latest):
        raise ValueError("pass either name or latest=True, not both or neither")
    target = parse_database_url(database_url)
    backend = _backend(target, timeout_seconds)
    if table is not None:
        validate_table_name(table)
    if name is None:
        name = _latest_name(directory, target, table)

    info = verified_backup(directory, name)
    if info.format != backend.format:
        raise UnsupportedDatabaseError(
            f"backup {name!r} is in {info.format} format and cannot be restored into "
            f"{target.description}; choose a backup of that database"
        )
    backend.check_tools(RESTORE_TOOLS)
    restored_table = _table_to_restore(info, table)
    live_tables = backend.list_tables()

    if restored_table is None:
        if live_tables and not force:
            listed = ", ".join(live_tables[:5]) + (", ..." if len(live_tables) > 5 else "")
            raise DatabaseNotEmptyError(
                f"{target.description} is not empty: it has {len(live_tables)} tables "
                f"({listed}) that the restore may replace; pass --yes to restore over them"
            )
        backend.restore_database(info.path)
    else:
        if restored_table not in live_tables:
            raise TableNotFoundError(
                f"table {restored_table!r} from backup {name!r} does not exist in "
                f"{target.description}; restore the whole backup, or create the table first "
                "(for example with the application's migrations)"
            )
        if not force and backend.table_has_rows(restored_table):
            raise DatabaseNotEmptyError(
                f"table {restored_table!r} in {target.description} has rows, and the restore "
                "replaces all of them; pass --yes to restore over them"
            )
        backend.restore_table(info.path, restored_table)
    logger.info(
        "Backup %s restored into %s%s.",
        name, target.description, f" (table {restored_table})" if restored_table else "",
    )
    return info


def backup_directory(settings: Settings) -> Path:
    """Return the configured backup folder: TRAVI_BACKUP__DIRECTORY, else <state>/backups."""
    return settings.backup.directory or settings.state_dir / "backups"


def _backend(target: DatabaseTarget, timeout_seconds: float) -> PostgresBackend | SqliteBackend:
    if target.kind == "sqlite":
        return SqliteBackend(target, timeout_seconds)
    return PostgresBackend(target, timeout_seconds)


def _sync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _apply_retention(directory: Path, keep: int, new_backup: BackupInfo) -> None:
    """Remove old backups beyond ``keep``; a failure is logged and leaves the new backup alone."""
    for backup in expired_backups(list_backups(directory, verify=False), keep, new_backup.name):
        if backup.database != new_backup.database or backup.table != new_backup.table:
            continue
        try:
            remove_backup(backup)
        except OSError as exc:
            logger.warning("Could not remove old backup %s: %s.", backup.name, exc)
            continue
        logger.info("Old backup %s removed (keeping the newest %d).", backup.name, keep)


def _table_to_restore(info: BackupInfo, requested: str | None) -> str | None:
    if requested is None:
        return info.table
    return resolve_table(requested, info.tables, f"backup {info.name!r}")


def _latest_name(directory: Path, target: DatabaseTarget, table: str | None) -> str:
    """Return the newest backup of ``target`` in ``directory`` that contains ``table``."""
    backups = list_backups(directory, verify=False)
    if not backups:
        raise BackupNotFoundError(f"no backups in {directory}: make one with 'travi db backup'")
    own = []
    for backup in backups:
        if backup.database is None:
            logger.warning(
                "Backup %s is skipped by --latest: its sidecar is %s.",
                backup.name, backup.checksum_status.split()[0],
            )
        elif backup.database == target.description:
            own.append(backup)
    if not own:
        raise BackupNotFoundError(
            f"none of the {len(backups)} backups in {directory} is of {target.description}; "
            "pass --file NAME to restore one of them (see 'travi db backup list')"
        )
    for backup in own:
        if table is None and backup.table is None:
            return backup.name
        if table is not None and _contains(backup, table):
            return backup.name
    content = f"table {table!r}" if table else "the whole database"
    raise BackupNotFoundError(
        f"no backup of {target.description} in {directory} contains {content}; pass --file NAME "
        "to choose one, or --table NAME to restore one table (see 'travi db backup list')"
    )


def _contains(backup: BackupInfo, table: str) -> bool:
    try:
        resolve_table(table, backup.tables, backup.name)
    except TableNotFoundError:
        return False
    return True
