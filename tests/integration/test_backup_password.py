"""Backups of a PostgreSQL server that checks passwords (SCRAM), started for this module.

The shared test server trusts loopback connections, so only a server of our own shows that the
password from the URL really reaches pg_dump, pg_restore and psql through the password file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.backup import DatabaseAccessError, create_backup, restore_backup
from shared.embedded import free_port
from tests.conftest import missing
from tests.integration.test_backup_restore import ITEMS, create_tables, execute, rows

PASSWORD = "Sc:ram\\pass'word-4410"
pytestmark = pytest.mark.postgres


def _postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    initdb = shutil.which("initdb") or (str(candidates[0]) if candidates else None)
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def scram_server() -> Iterator[str]:
    """The URL (without password) of a fresh server that requires SCRAM passwords."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        missing("initdb not found: install the PostgreSQL server package")
    root = Path(tempfile.mkdtemp(prefix="travi-scram-"))
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(password_file, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]

    data = root / "data"
    port = free_port()
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-A", "scram-sha-256", "-U", "postgres",
         f"--pwfile={password_file}"],
        check=True, capture_output=True, timeout=60,
    )

    try:
        # With -l the server logs to a file. Without it, the server keeps pg_ctl's output pipe
        # open and capture_output waits for its end until the timeout.
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
             "-w", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
            check=True, capture_output=True, timeout=60,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _with_password(url: str, password: str) -> str:
    from urllib.parse import quote

    return url.replace("postgres@", f"postgres:{quote(password, safe='')}@")


def test_password_reaches_tools(
    scram_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-passfile"))
    url = _with_password(scram_server, PASSWORD)
    backups = tmp_path / "backups"
    create_tables(url)
    try:
        backup = create_backup(url, backups)
        execute(url, "DELETE FROM items")
        restore_backup(url, backups, name=backup.name, force=True)
        assert rows(url, "items") == ITEMS
        execute(url, "DELETE FROM items")
        restore_backup(url, backups, name=backup.name, table="items", force=True)
        assert rows(url, "items") == ITEMS
    finally:
        execute(url, "DROP TABLE IF EXISTS items, other")


def test_wrong_password_reported_without_it(scram_server: str, tmp_path: Path) -> None:
    url = _with_password(scram_server, "wrong-password-5521")
    with pytest.raises(DatabaseAccessError) as caught:
        create_backup(url, tmp_path / "backups")
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "5521" not in message
    assert "postgresql://postgres@127.0.0.1" in message
