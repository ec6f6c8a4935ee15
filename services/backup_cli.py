"""Backup commands of the ``travi`` CLI: ``travi db backup``, ``backup list`` and ``restore``.

They work on the database named by TRAVI_BACKUP__DATABASE_URL (the application being rolled
back, not TRAVI's own) and the folder TRAVI_BACKUP__DIRECTORY (default <state>/backups), and
call the backup library directly: no running TRAVI is needed.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from shared.backup import (
    BackupInfo,
    backup_directory,
    create_backup,
    list_backups,
    restore_backup,
)
from shared.backup.target import parse_database_url
from shared.errors import TraviError
from shared.settings import Settings

TABLE_HELP = "Back up only this table (TABLE or SCHEMA.TABLE)."
LIST_COLUMNS = ("NAME", "CREATED (UTC)", "SIZE", "DATABASE", "TABLES", "CHECKSUM")
# Tables shown per backup in the list before the rest is summarised as "+N more".
MAX_LISTED_TABLES = 4

backup_app = typer.Typer(
    help="Back up the application's database (TRAVI_BACKUP__DATABASE_URL), or list the backups.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``backup`` (a command with a ``list`` subcommand) and ``restore`` to ``travi db``."""
    groups["db"].add_typer(backup_app, name="backup")
    groups["db"].command("restore")(restore)


@backup_app.callback()
def backup(
    context: typer.Context,
    table: Annotated[str | None, typer.Option("--table", help=TABLE_HELP)] = None,
) -> None:
    """Back up the database now; ``travi db backup list`` shows the backups instead."""
    if context.invoked_subcommand is not None:
        if table is not None:
            _fail("--table applies to a backup, not to 'list': run 'travi db backup --table NAME'")
        return
    settings = _settings()
    database_url = _database_url(settings)
    directory = backup_directory(settings)
    before = {info.name for info in list_backups(directory, verify=False)}
    try:
        info = create_backup(
            database_url, directory, table=table, keep=settings.backup.keep,
            timeout_seconds=settings.backup.timeout_seconds,
        )
    except TraviError as exc:
        _fail(str(exc))
    typer.echo(f"Backup {info.name} created in {directory}")
    typer.echo(f"  database  {info.database}")
    typer.echo(f"  tables    {', '.join(info.tables) or '(none)'}")
    typer.echo(f"  size      {format_size(info.size)} ({info.size} bytes)")
    typer.echo(f"  sha256    {info.sha256}")
    after = {listed.name for listed in list_backups(directory, verify=False)}
    removed = sorted(before - after)
    if removed:
        typer.echo(
            f"Removed by retention (keeping the newest {settings.backup.keep}): "
            + ", ".join(removed)
        )


@backup_app.command("list")
def list_command() -> None:
    """List the backups, newest first, with each file's checksum checked against its sidecar."""
    directory = backup_directory(_settings())
    backups = list_backups(directory)
    if not backups:
        typer.echo(f"No backups in {directory}: make one with 'travi db backup'.")
        return
    typer.echo(format_table([list_row(info) for info in backups]))
    damaged = [info.name for info in backups if info.checksum_status != "ok"]
    if damaged:
        typer.echo(
            f"{len(damaged)} backup(s) cannot be restored until the checksum status is ok: "
            f"{', '.join(damaged)}",
            err=True,
        )


def restore(
    latest: Annotated[bool, typer.Option("--latest", help="Restore the newest backup.")] = False,
    file: Annotated[
        str | None, typer.Option("--file", help="Restore this backup (a name from 'backup list').")
    ] = None,
    table: Annotated[
        str | None, typer.Option("--table", help="Replace only this table's rows.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Restore over a database or table that has data.")
    ] = False,
) -> None:
    """Restore a backup after checking its checksum; give --latest or --file NAME."""
    if latest == (file is not None):
        _fail("give exactly one of --latest and --file NAME", code=2)
    settings = _settings()
    database_url = _database_url(settings)
    directory = backup_directory(settings)
    try:
        info = restore_backup(
            database_url, directory, name=file, latest=latest, table=table, force=yes,
            timeout_seconds=settings.backup.timeout_seconds,
        )
    except TraviError as exc:
        _fail(str(exc))
    restored_table = table or info.table
    scope = f"table {restored_table}" if restored_table else "the whole database"
    # The backup may come from another database: name the one that was restored into.
    target = parse_database_url(database_url).description
    typer.echo(f"Restored {scope} from {info.name} (checksum ok) into {target}")


def format_size(size: int) -> str:
    """Return ``size`` bytes in binary units, e.g. ``12.5 KiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_table(rows: list[tuple[str, ...]]) -> str:
    """Return ``rows`` under LIST_COLUMNS as left-aligned columns two spaces apart."""
    table = [LIST_COLUMNS, *rows]
    widths = [max(len(row[index]) for row in table) for index in range(len(LIST_COLUMNS))]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def list_row(info: BackupInfo) -> tuple[str, ...]:
    """Return the cells of one backup in the order of LIST_COLUMNS."""
    tables = info.tables[:MAX_LISTED_TABLES]
    listed = ", ".join(tables)
    if len(info.tables) > MAX_LISTED_TABLES:
        listed += f" +{len(info.tables) - MAX_LISTED_TABLES} more"
    return (
        info.name,
        info.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        format_size(info.size),
        info.database or "?",
        listed or "?",
        info.checksum_status,
    )


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        _fail(f"Invalid configuration: {exc}", code=2)


def _database_url(settings: Settings) -> str:
    if settings.backup.database_url is None:
        _fail(
            "no database to back up: set TRAVI_BACKUP__DATABASE_URL to the application's "
            "database (sqlite:///PATH or postgresql://USER@HOST/DB)",
            code=2,
        )
    return settings.backup.database_url.get_secret_value()


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)
