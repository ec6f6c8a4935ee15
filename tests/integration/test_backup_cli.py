"""The ``travi db backup``, ``travi db backup list`` and ``travi db restore`` commands."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from tests.integration.test_backup_restore import ITEMS, OTHERS, create_tables, execute, rows

runner = CliRunner()


def configure(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fill the database at ``url`` and name it in TRAVI_BACKUP__DATABASE_URL."""
    create_tables(url)
    for name in [name for name in os.environ if name.startswith("TRAVI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRAVI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TRAVI_BACKUP__DATABASE_URL", url)
    return url


@pytest.fixture
def configured(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A filled SQLite, then PostgreSQL, database configured for the commands."""
    return configure(database_url, tmp_path, monkeypatch)


@pytest.fixture
def configured_sqlite(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A filled SQLite database configured for the commands."""
    return configure(sqlite_url, tmp_path, monkeypatch)


def backup_dir(tmp_path: Path) -> Path:
    """The backup folder under the test's state folder."""
    return tmp_path / "state" / "backups"


def test_backup_list_restore(configured: str, tmp_path: Path) -> None:
    backed_up = runner.invoke(app, ["db", "backup"])
    listed = runner.invoke(app, ["db", "backup", "list"])
    execute(configured, "DELETE FROM items")
    rejected = runner.invoke(app, ["db", "restore", "--latest"])
    restored = runner.invoke(app, ["db", "restore", "--latest", "--yes"])

    assert backed_up.exit_code == 0, backed_up.output
    assert "Backup 2" in backed_up.stdout
    assert "sha256" in backed_up.stdout
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "CREATED", "(UTC)", "SIZE", "DATABASE", "TABLES", "CHECKSUM"]
    assert row.endswith("  ok")
    assert re.search(r"(public\.)?items, (public\.)?other", row)
    assert rejected.exit_code == 1
    assert "pass --yes" in rejected.stderr
    assert restored.exit_code == 0, restored.output
    assert "Restored the whole database" in restored.stdout
    assert rows(configured, "items") == ITEMS


def test_table_backup_and_restore(configured: str, tmp_path: Path) -> None:
    backed_up = runner.invoke(app, ["db", "backup", "--table", "other"])
    name = next(path.name for path in backup_dir(tmp_path).iterdir() if path.suffix != ".json")
    execute(configured, "DELETE FROM other")
    execute(configured, "DELETE FROM items WHERE id = 1")
    restored = runner.invoke(app, ["db", "restore", "--file", name, "--table", "other"])

    assert backed_up.exit_code == 0, backed_up.output
    assert "-other." in name
    assert restored.exit_code == 0, restored.output
    assert "Restored table" in restored.stdout
    assert rows(configured, "other") == OTHERS
    assert rows(configured, "items") == ITEMS[1:]


def test_list_shows_checksum_problems(configured: str, tmp_path: Path) -> None:
    for _ in range(3):
        assert runner.invoke(app, ["db", "backup"]).exit_code == 0
    newest, middle, oldest = sorted(
        (path for path in backup_dir(tmp_path).iterdir() if path.suffix != ".json"), reverse=True
    )
    with newest.open("ab") as handle:
        handle.write(b"tampered")
    Path(str(middle) + ".json").unlink()

    listed = runner.invoke(app, ["db", "backup", "list"])
    restored = runner.invoke(app, ["db", "restore", "--latest", "--yes"])

    statuses = {line.split()[0]: line.rsplit("  ", 1)[1] for line in listed.stdout.splitlines()[1:]}
    assert statuses == {newest.name: "mismatch", middle.name: "missing sidecar", oldest.name: "ok"}
    assert "2 backup(s) cannot be restored" in listed.stderr
    assert restored.exit_code == 1
    assert "checksum mismatch" in restored.stderr


def test_retention_reported(configured: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAVI_BACKUP__KEEP", "1")
    first = runner.invoke(app, ["db", "backup"])
    second = runner.invoke(app, ["db", "backup"])
    assert "Removed by retention" not in first.stdout
    assert "Removed by retention (keeping the newest 1)" in second.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["db", "restore"], "exactly one of --latest and --file"),
        (["db", "restore", "--latest", "--file", "x"], "exactly one of --latest and --file"),
        (["db", "restore", "--file", "../secrets.dump"], "without a path"),
        (["db", "restore", "--file", "20200101T000000000Z-app.dump"], "no backup named"),
        (["db", "restore", "--latest"], "make one with 'travi db backup'"),
        (["db", "backup", "--table", "x;y"], "invalid table"),
        (["db", "backup", "--table", "nope"], "'nope' not found"),
        (["db", "backup", "--table", "items", "list"], "--table applies to a backup"),
    ],
)
def test_errors_are_one_line(configured_sqlite: str, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unconfigured_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAVI_BACKUP__DATABASE_URL", raising=False)
    monkeypatch.setenv("TRAVI_STATE_DIR", str(tmp_path / "state"))
    result = runner.invoke(app, ["db", "backup"])
    empty = runner.invoke(app, ["db", "backup", "list"])
    assert result.exit_code == 2
    assert "set TRAVI_BACKUP__DATABASE_URL" in result.stderr
    assert empty.exit_code == 0
    assert "No backups in" in empty.stdout


def test_password_not_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAVI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TRAVI_BACKUP__DATABASE_URL", "postgresql://app:hunter22@127.0.0.1:1/shop")
    result = runner.invoke(app, ["db", "backup"])
    assert result.exit_code == 1
    assert "hunter22" not in result.output
    assert "postgresql://app@127.0.0.1:1/shop" in result.stderr
