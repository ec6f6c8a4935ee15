"""Backup files on disk: their names, JSON sidecars, checksums, listing and retention.

A backup is one file named ``<UTC time>-<database>[-<table>].<dump|sqlite>``, for example
``20261204T153000123Z-shop-orders.dump``, so names sort by time. Beside it, ``<name>.json``
records its size, SHA-256, database (without password), tables, creation time and format.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from shared.backup.errors import BackupNotFoundError, ChecksumMismatchError, SidecarError
from shared.errors import InvalidName

BackupFormat = Literal["pg_dump-custom", "sqlite"]
ChecksumStatus = Literal["ok", "mismatch", "missing sidecar", "invalid sidecar", "not checked"]

EXTENSIONS: dict[BackupFormat, str] = {"pg_dump-custom": "dump", "sqlite": "sqlite"}
SIDECAR_SUFFIX = ".json"
SIDECAR_VERSION = 1
NAME_PATTERN = re.compile(
    r"^(?P<stamp>\d{8}T\d{9}Z)-(?P<label>[A-Za-z0-9_-]{1,130})\.(?P<extension>dump|sqlite)$"
)
_STAMP_FORMAT = "%Y%m%dT%H%M%S"
_NAME_HINT = (
    "give a backup file name as shown by 'travi db backup list', "
    "such as 20261204T153000123Z-app.dump"
)


class BackupInfo(BaseModel):
    """One backup file and what its sidecar records about it."""

    name: str
    path: Path
    created_at: datetime
    size: int
    # Hex SHA-256 of the file as it was written; None when the sidecar is missing or invalid.
    sha256: str | None
    # The database URL without password, e.g. postgresql://app@db:5432/app.
    database: str | None
    tables: list[str]
    # The one table the backup was restricted to, or None for a whole database.
    table: str | None
    format: BackupFormat
    # Version line of pg_dump, or of the SQLite library, that wrote the file.
    tool_version: str | None = None
    checksum_status: ChecksumStatus = "not checked"


def format_stamp(moment: datetime) -> str:
    """Return the file-name time stamp of ``moment``: UTC, to the millisecond."""
    moment = moment.astimezone(UTC)
    return f"{moment.strftime(_STAMP_FORMAT)}{moment.microsecond // 1000:03d}Z"


def parse_stamp(stamp: str) -> datetime:
    """Return the UTC time a file-name time stamp stands for."""
    moment = datetime.strptime(stamp[:15], _STAMP_FORMAT).replace(tzinfo=UTC)
    return moment + timedelta(milliseconds=int(stamp[15:18]))


def backup_name(moment: datetime, label: str, backup_format: BackupFormat) -> str:
    """Build the file name of a backup made at ``moment``; ``label`` is database[-table]."""
    return f"{format_stamp(moment)}-{label}.{EXTENSIONS[backup_format]}"


def validate_backup_name(name: str) -> str:
    """Return ``name`` if it is a plain backup file name, else raise InvalidName."""
    if not isinstance(name, str) or not name:
        raise InvalidName("backup name", name, _NAME_HINT)
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise InvalidName(
            "backup name", name, "give a plain file name inside the backup folder, without a path"
        )
    if not NAME_PATTERN.match(name):
        raise InvalidName("backup name", name, _NAME_HINT)
    return name


def sidecar_path(path: Path) -> Path:
    """Return the path of the JSON sidecar that belongs to the backup file at ``path``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_sha256(path: Path) -> str:
    """Return the hex SHA-256 of the file at ``path``."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_sidecar(info: BackupInfo) -> None:
    """Write the sidecar of ``info`` atomically (a temporary file renamed over it), mode 0600."""
    payload = info.model_dump(mode="json", exclude={"path", "checksum_status", "name"})
    payload["version"] = SIDECAR_VERSION
    target = sidecar_path(info.path)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".partial")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_backup(path: Path, *, verify: bool) -> BackupInfo:
    """Describe the backup file at ``path`` from its sidecar, checking its checksum if ``verify``.

    A missing or unreadable sidecar does not raise. The result's ``checksum_status`` is then
    "missing sidecar" or "invalid sidecar", and the fields only the sidecar records are empty.
    """
    match = NAME_PATTERN.match(path.name)
    if match is None:
        raise InvalidName("backup name", path.name, _NAME_HINT)
    size = path.stat().st_size
    backup_format: BackupFormat = "sqlite" if match["extension"] == "sqlite" else "pg_dump-custom"
    fallback = BackupInfo(
        name=path.name, path=path, created_at=parse_stamp(match["stamp"]), size=size, sha256=None,
        database=None, tables=[], table=None, format=backup_format,
    )
    try:
        payload = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return fallback.model_copy(update={"checksum_status": "missing sidecar"})
    except (OSError, ValueError):
        return fallback.model_copy(update={"checksum_status": "invalid sidecar"})
    try:
        recorded = BackupInfo.model_validate({**payload, "name": path.name, "path": path})
    except ValidationError:
        return fallback.model_copy(update={"checksum_status": "invalid sidecar"})

    status: ChecksumStatus = "not checked"
    if verify:
        matches = recorded.size == size and recorded.sha256 == file_sha256(path)
        status = "ok" if matches else "mismatch"
    return recorded.model_copy(update={"checksum_status": status})


def list_backups(directory: Path, *, verify: bool = True) -> list[BackupInfo]:
    """Return the backups in ``directory``, newest first; with ``verify``, check each checksum.

    Files whose names do not follow the backup pattern (sidecars, partial files, anything an
    operator put there) are skipped. A missing folder has no backups.
    """
    try:
        candidates = [entry for entry in directory.iterdir() if NAME_PATTERN.match(entry.name)]
    except FileNotFoundError:
        return []
    backups = []
    for path in sorted(candidates, key=lambda entry: entry.name, reverse=True):
        try:
            backups.append(read_backup(path, verify=verify))
        except FileNotFoundError:
            continue  # Removed by another process's retention since the folder was read.
    return backups


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def verified_backup(directory: Path, name: str) -> BackupInfo:
    """Return the backup ``name`` in ``directory`` after checking its size and SHA-256."""
    validate_backup_name(name)
    path = directory / name
    if path.is_symlink():
        raise InvalidName(
            "backup name",
            name,
            "the file is a symbolic link; give a backup file that the folder contains",
        )
    if not path.is_file():
        raise BackupNotFoundError(
            f"no backup named {name!r} in {directory}: run 'travi db backup list' to see the names"
        )
    info = read_backup(path, verify=False)
    if info.checksum_status in ("missing sidecar", "invalid sidecar"):
        raise SidecarError(
            f"backup {name!r} has {_article(info.checksum_status)} {info.checksum_status} "
            f"{sidecar_path(path).name}, so its checksum cannot be verified; restore another "
            "backup (see 'travi db backup list')"
        )
    if info.size != path.stat().st_size:
        raise ChecksumMismatchError(name, f"{info.size} bytes", f"{path.stat().st_size} bytes")
    actual = file_sha256(path)
    if actual != info.sha256:
        raise ChecksumMismatchError(name, f"SHA-256 {info.sha256}", f"SHA-256 {actual}")
    return info.model_copy(update={"checksum_status": "ok"})


def expired_backups(backups: Iterable[BackupInfo], keep: int, protect: str) -> list[BackupInfo]:
    """Return the backups that retention removes: all but the newest ``keep`` of each group.

    Backups are grouped by database and table, so table backups never push out the last
    backup of the whole database. ``protect`` (the backup just made) is never returned, and
    since ``keep`` is at least 1, neither is the only backup of a group. Backups without a
    readable sidecar belong to no known group and are left alone.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    groups: dict[tuple[str, str | None], list[BackupInfo]] = {}
    for backup in backups:
        if backup.database is not None:
            groups.setdefault((backup.database, backup.table), []).append(backup)
    expired = []
    for members in groups.values():
        newest_first = sorted(members, key=lambda backup: backup.name, reverse=True)
        expired.extend(backup for backup in newest_first[keep:] if backup.name != protect)
    return sorted(expired, key=lambda backup: backup.name)


def remove_backup(backup: BackupInfo) -> None:
    """Delete a backup file and its sidecar; files already gone are not an error."""
    backup.path.unlink(missing_ok=True)
    sidecar_path(backup.path).unlink(missing_ok=True)


def publish_file(temporary: Path, directory: Path, moment: datetime, label: str,
                 backup_format: BackupFormat) -> Path:
    """Give a finished temporary file its backup name without replacing an existing backup.

    Two backups made in the same millisecond would get the same name, so the time in the name
    moves on by a millisecond until a free name is found. A hard link claims the name
    atomically; on a file system without hard links, a rename after an existence check does.
    """
    for offset in range(1000):
        stamp = moment + timedelta(milliseconds=offset)
        final = directory / backup_name(stamp, label, backup_format)
        try:
            os.link(temporary, final)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if final.exists():
                continue
            os.replace(temporary, final)
            return final
        temporary.unlink()
        return final
    raise FileExistsError(f"no free backup name near {backup_name(moment, label, backup_format)}")

