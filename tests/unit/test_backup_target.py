"""Database URLs split into backup targets: the password never leaves the password field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.backup.errors import UnsupportedDatabaseError
from shared.backup.target import file_label, parse_database_url

SECRET = "pa:ss@w/rd'\\x"


def test_postgres_password_kept_apart() -> None:
    url = "postgresql+psycopg://app:pa%3Ass%40w%2Frd%27%5Cx@db.internal:6543/shop?sslmode=require"
    target = parse_database_url(url)
    assert target.kind == "postgresql"
    assert target.password == SECRET
    assert target.description == "postgresql://app@db.internal:6543/shop"
    assert SECRET not in target.conninfo
    assert "pa:ss" not in target.description
    assert SECRET not in repr(target)
    assert target.name == "shop"


def test_conninfo_has_every_part_but_password() -> None:
    target = parse_database_url("postgresql://app:secret@db:6543/shop?sslmode=require")
    assert target.conninfo == (
        "dbname='shop' host='db' port='6543' user='app' sslmode='require' connect_timeout='10'"
    )


def test_password_in_query_moves_to_password() -> None:
    target = parse_database_url("postgresql://app@db/shop?password=hunter22&connect_timeout=3")
    assert target.password == "hunter22"
    assert "hunter22" not in target.conninfo
    assert "connect_timeout='3'" in target.conninfo


def test_conninfo_quotes_values() -> None:
    target = parse_database_url("postgresql://o%27brien@db/my%20db")
    assert "user='o\\'brien'" in target.conninfo
    assert "dbname='my db'" in target.conninfo
    assert target.name == "my_db"


def test_unix_socket_host_from_query() -> None:
    target = parse_database_url("postgres://app@/shop?host=/var/run/postgresql")
    assert "host='/var/run/postgresql'" in target.conninfo
    assert target.description == "postgresql://app@/var/run/postgresql/shop"


def test_scrub_removes_password() -> None:
    target = parse_database_url("postgresql://app:hunter22@db/shop")
    assert target.scrub("FATAL: bad password hunter22 given") == "FATAL: bad password *** given"


def test_sqlite_path_resolved(tmp_path: Path) -> None:
    target = parse_database_url(f"sqlite+aiosqlite:///{tmp_path}/state/../app.db")
    assert target.kind == "sqlite"
    assert target.sqlite_path == tmp_path / "app.db"
    assert target.description == f"sqlite:///{tmp_path / 'app.db'}"
    assert target.name == "app"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_sqlite_memory_rejected(url: str) -> None:
    with pytest.raises(UnsupportedDatabaseError, match="names no database file"):
        parse_database_url(url)


def test_other_databases_rejected() -> None:
    with pytest.raises(UnsupportedDatabaseError, match="not 'mysql'"):
        parse_database_url("mysql://app:secret@db/shop")


def test_unparsable_url_not_echoed() -> None:
    with pytest.raises(UnsupportedDatabaseError) as caught:
        parse_database_url("::not a url:hunter22")
    assert "hunter22" not in str(caught.value)


def test_postgres_without_database_rejected() -> None:
    with pytest.raises(UnsupportedDatabaseError, match="names no database"):
        parse_database_url("postgresql://app:secret@db")


@pytest.mark.parametrize(
    ("value", "label"),
    [("shop", "shop"), ("my db.v2", "my_db_v2"), ("...", "db"), ("x" * 80, "x" * 63)],
)
def test_file_label(value: str, label: str) -> None:
    assert file_label(value) == label
