"""Backups of the application's database: PostgreSQL with pg_dump, SQLite with its backup API.

``create_backup``, ``list_backups`` and ``restore_backup`` block; async code calls them with
``asyncio.to_thread``. Every error they raise on purpose is a :class:`BackupError`.
"""

from shared.backup.api import (
    DEFAULT_KEEP,
    DEFAULT_TIMEOUT_SECONDS,
    backup_directory,
    create_backup,
    restore_backup,
)
from shared.backup.catalog import BackupInfo, list_backups
from shared.backup.errors import (
    BackupError,
    BackupNotFoundError,
    ChecksumMismatchError,
    DatabaseAccessError,
    DatabaseNotEmptyError,
    MissingToolError,
    SidecarError,
    TableNotFoundError,
    ToolFailedError,
    UnsafeRestoreError,
    UnsupportedDatabaseError,
)

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_TIMEOUT_SECONDS",
    "BackupError",
    "BackupInfo",
    "BackupNotFoundError",
    "ChecksumMismatchError",
    "DatabaseAccessError",
    "DatabaseNotEmptyError",
    "MissingToolError",
    "SidecarError",
    "TableNotFoundError",
    "ToolFailedError",
    "UnsafeRestoreError",
    "UnsupportedDatabaseError",
    "backup_directory",
    "create_backup",
    "list_backups",
    "restore_backup",
]
