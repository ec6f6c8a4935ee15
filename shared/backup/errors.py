"""Errors of the backup library; each message names the value and what to do next."""

from __future__ import annotations

from shared.errors import ConfigurationError, Conflict, NotFound, TraviError


class BackupError(TraviError):
    """Base of every error raised on purpose by the backup library."""


class UnsupportedDatabaseError(BackupError, ConfigurationError):
    """A database URL that names no database this library can back up."""


class MissingToolError(BackupError):
    """A PostgreSQL client program that is not installed or not on PATH."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        super().__init__(
            f"{tool} not found on PATH: install the PostgreSQL client tools "
            "(scripts/setup installs Debian's postgresql-client) or put their folder on PATH"
        )


class ToolFailedError(BackupError):
    """A PostgreSQL client program that exited with an error or ran out of time."""

    def __init__(self, tool: str, problem: str, hint: str) -> None:
        self.tool = tool
        self.problem = problem
        self.hint = hint
        super().__init__(f"{tool} failed: {problem}; {hint}")


class DatabaseAccessError(BackupError):
    """A database that could not be opened or queried."""


class BackupNotFoundError(BackupError, NotFound):
    """A backup name or a ``--latest`` request that matches no backup file."""


class SidecarError(BackupError):
    """A backup whose JSON sidecar (size, checksum, tables) is missing or unreadable."""


class ChecksumMismatchError(BackupError):
    """A backup file whose size or SHA-256 differs from what its sidecar recorded."""

    def __init__(self, name: str, expected: str, actual: str) -> None:
        self.name = name
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for backup {name!r}: the sidecar records {expected} but the "
            f"file has {actual}, so the file was altered or damaged after it was made; restore "
            "another backup (see 'travi db backup list')"
        )


class TableNotFoundError(BackupError, NotFound):
    """A table that is missing from the database or from the backup."""


class DatabaseNotEmptyError(BackupError, Conflict):
    """A restore that would overwrite data and was not confirmed."""


class UnsafeRestoreError(BackupError, Conflict):
    """A single-table restore that cannot be done safely.

    Either other tables' foreign keys refer to the table, or its columns differ between the
    database and the backup.
    """
