"""Sidecars, checksum status, listing, naming collisions and retention of backup files."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.backup.catalog import (
    BackupInfo,
    expired_backups,
    file_sha256,
    list_backups,
    publish_file,
    read_backup,
    sidecar_path,
    verified_backup,
    write_sidecar,
)
from shared.backup.errors import BackupNotFoundError, ChecksumMismatchError, SidecarError
from shared.errors import InvalidName

START = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)


def make_backup(directory: Path, minute: int, *, database: str = "sqlite:////data/app.db",
                table: str | None = None, content: bytes = b"backup bytes") -> BackupInfo:
    """Write a backup file and its sidecar, backup ``minute`` minutes after START."""
    moment = START + timedelta(minutes=minute)
    label = "app" if table is None else f"app-{table}"
    path = directory / f"{moment.strftime('%Y%m%dT%H%M%S')}000Z-{label}.sqlite"
    path.write_bytes(content)
    info = BackupInfo(
        name=path.name, path=path, created_at=moment, size=len(content),
        sha256=file_sha256(path), database=database, tables=[table] if table else ["a", "b"],
        table=table, format="sqlite", tool_version="SQLite 3",
    )
    write_sidecar(info)
    return info


def test_sidecar_round_trip(tmp_path: Path) -> None:
    backup = make_backup(tmp_path, 0)
    payload = json.loads(sidecar_path(backup.path).read_text())
    read = read_backup(backup.path, verify=True)
    assert payload["sha256"] == backup.sha256
    assert payload["size"] == len(b"backup bytes")
    assert payload["database"] == "sqlite:////data/app.db"
    assert payload["tables"] == ["a", "b"]
    assert payload["format"] == "sqlite"
    assert payload["created_at"] == "2026-12-04T15:30:00Z"
    assert read.checksum_status == "ok"
    unchecked = {"checksum_status"}
    assert read.model_dump(exclude=unchecked) == backup.model_dump(exclude=unchecked)


def test_sidecar_file_is_private(tmp_path: Path) -> None:
    backup = make_backup(tmp_path, 0)
    assert stat.S_IMODE(os.stat(sidecar_path(backup.path)).st_mode) == 0o600


def test_altered_file_is_mismatch(tmp_path: Path) -> None:
    backup = make_backup(tmp_path, 0)
    backup.path.write_bytes(b"backup bytez")
    assert read_backup(backup.path, verify=True).checksum_status == "mismatch"
    with pytest.raises(ChecksumMismatchError, match="SHA-256"):
        verified_backup(tmp_path, backup.name)


def test_truncated_file_is_size_mismatch(tmp_path: Path) -> None:
    backup = make_backup(tmp_path, 0)
    backup.path.write_bytes(b"backup")
    with pytest.raises(ChecksumMismatchError, match="12 bytes but the file has 6 bytes"):
        verified_backup(tmp_path, backup.name)


def test_missing_and_invalid_sidecar(tmp_path: Path) -> None:
    missing = make_backup(tmp_path, 0)
    invalid = make_backup(tmp_path, 1)
    sidecar_path(missing.path).unlink()
    sidecar_path(invalid.path).write_text("{not json")
    statuses = {info.name: info.checksum_status for info in list_backups(tmp_path)}
    assert statuses == {missing.name: "missing sidecar", invalid.name: "invalid sidecar"}
    with pytest.raises(SidecarError, match="missing sidecar"):
        verified_backup(tmp_path, missing.name)
    with pytest.raises(SidecarError, match="invalid sidecar"):
        verified_backup(tmp_path, invalid.name)


def test_sidecar_with_wrong_fields_is_invalid(tmp_path: Path) -> None:
    backup = make_backup(tmp_path, 0)
    sidecar_path(backup.path).write_text(json.dumps({"size": "big"}))
    assert read_backup(backup.path, verify=True).checksum_status == "invalid sidecar"


def test_list_newest_first_and_skips_other_files(tmp_path: Path) -> None:
    names = [make_backup(tmp_path, minute).name for minute in (5, 0, 9)]
    (tmp_path / "notes.txt").write_text("operator notes")
    (tmp_path / ".20261204T153000000Z-app.sqlite.partial").write_bytes(b"")
    listed = [info.name for info in list_backups(tmp_path)]
    assert listed == sorted(names, reverse=True)


def test_list_of_missing_folder_is_empty(tmp_path: Path) -> None:
    assert list_backups(tmp_path / "absent") == []


def test_list_without_verify(tmp_path: Path) -> None:
    make_backup(tmp_path, 0)
    assert list_backups(tmp_path, verify=False)[0].checksum_status == "not checked"


def test_unknown_name_not_found(tmp_path: Path) -> None:
    with pytest.raises(BackupNotFoundError, match="travi db backup list"):
        verified_backup(tmp_path, "20261204T153000000Z-app.sqlite")


def test_name_with_path_rejected_before_lookup(tmp_path: Path) -> None:
    (tmp_path / "inner").mkdir()
    make_backup(tmp_path / "inner", 0)
    with pytest.raises(InvalidName):
        verified_backup(tmp_path, "inner/20261204T153000000Z-app.sqlite")


def test_publish_never_replaces(tmp_path: Path) -> None:
    paths = []
    for content in (b"first", b"second", b"third"):
        temporary = tmp_path / ".tmp.partial"
        temporary.write_bytes(content)
        paths.append(publish_file(temporary, tmp_path, START, "app", "sqlite"))
    assert [path.name for path in paths] == [
        "20261204T153000000Z-app.sqlite",
        "20261204T153000001Z-app.sqlite",
        "20261204T153000002Z-app.sqlite",
    ]
    assert [path.read_bytes() for path in paths] == [b"first", b"second", b"third"]
    assert not (tmp_path / ".tmp.partial").exists()


def test_retention_keeps_newest(tmp_path: Path) -> None:
    backups = [make_backup(tmp_path, minute) for minute in range(5)]
    expired = expired_backups(backups, keep=2, protect=backups[-1].name)
    assert [info.name for info in expired] == [info.name for info in backups[:3]]


def test_retention_never_removes_protected(tmp_path: Path) -> None:
    # The protected backup is the oldest, as when the clock went backwards.
    backups = [make_backup(tmp_path, minute) for minute in range(3)]
    expired = expired_backups(backups, keep=1, protect=backups[0].name)
    assert [info.name for info in expired] == [backups[1].name]


def test_retention_keeps_only_backup(tmp_path: Path) -> None:
    only = make_backup(tmp_path, 0)
    assert expired_backups([only], keep=1, protect="another") == []


def test_retention_groups_by_database_and_table(tmp_path: Path) -> None:
    full = [make_backup(tmp_path, minute) for minute in (0, 1)]
    table = [make_backup(tmp_path, minute, table="orders") for minute in (2, 3, 4)]
    other = make_backup(tmp_path, 5, database="postgresql://app@db/shop")
    expired = expired_backups([*full, *table, other], keep=1, protect=other.name)
    assert [info.name for info in expired] == [full[0].name, table[0].name, table[1].name]


def test_retention_leaves_backups_without_sidecar(tmp_path: Path) -> None:
    backups = [make_backup(tmp_path, minute) for minute in range(3)]
    sidecar_path(backups[0].path).unlink()
    listed = list_backups(tmp_path, verify=False)
    expired = expired_backups(listed, keep=1, protect=backups[2].name)
    assert [info.name for info in expired] == [backups[1].name]


def test_retention_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        expired_backups([], keep=0, protect="x")


def test_symbolic_link_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    backup = make_backup(outside, 0)
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / backup.name).symlink_to(backup.path)
    with pytest.raises(InvalidName, match="symbolic link"):
        verified_backup(folder, backup.name)
