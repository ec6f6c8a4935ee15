"""The database backup that a service's configuration requests before switch_version."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.executor.drivers.base import Target
from services.executor.errors import ConfigurationError, StepFailed
from shared.settings import DriverConfig, Settings


def backup_arguments(
    settings: Settings, config: DriverConfig, target: Target
) -> tuple[str, Path, str | None, int]:
    """Return the database URL, folder, table and number kept for a service's backup.

    The service's driver options win (``backup_database_url``, ``backup_directory``,
    ``backup_table``, ``backup_keep``) over ``settings.backup``; the folder defaults to
    ``<state>/backups/<env>/<svc>``.
    """
    options = config.options
    url = options.get("backup_database_url")
    if url is None and settings.backup.database_url is not None:
        url = settings.backup.database_url.get_secret_value()
    if not url:
        raise ConfigurationError(
            f"backup_before_switch is set for {target.service} but no database is given: set "
            "options.backup_database_url in TRAVI_EXECUTOR__SERVICES or TRAVI_BACKUP__DATABASE_URL"
        )
    directory = options.get("backup_directory") or settings.backup.directory
    if directory is None:
        directory = settings.state_dir / "backups" / target.environment / target.service
    table = options.get("backup_table")
    keep = int(options.get("backup_keep", settings.backup.keep))
    return str(url), Path(directory), table, keep


async def back_up(settings: Settings, config: DriverConfig, target: Target) -> Any:
    """Run ``shared.backup.create_backup`` in a thread and return its BackupInfo."""
    try:
        from shared.backup import create_backup
    except ImportError as exc:
        raise StepFailed(
            f"backup_before_switch is set but the backup library is missing: {exc}"
        ) from exc
    try:
        url, directory, table, keep = backup_arguments(settings, config, target)
    except ConfigurationError as exc:
        raise StepFailed(str(exc)) from exc
    try:
        return await asyncio.to_thread(create_backup, url, directory, table=table, keep=keep)
    except Exception as exc:  # noqa: BLE001 - the step reports any backup failure.
        raise StepFailed(
            f"database backup before the switch failed: {type(exc).__name__}: {exc}"
        ) from exc
