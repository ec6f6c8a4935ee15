"""Backup file names, backup-name validation and table-name lookup, without any database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.backup.catalog import backup_name, format_stamp, parse_stamp, validate_backup_name
from shared.backup.errors import TableNotFoundError
from shared.backup.tables import quote_identifier, resolve_table, validate_table_name
from shared.errors import InvalidName

MOMENT = datetime(2026, 12, 4, 15, 30, 0, 123456, tzinfo=UTC)


def test_stamp_is_utc_to_the_millisecond() -> None:
    assert format_stamp(MOMENT) == "20261204T153000123Z"
    assert parse_stamp("20261204T153000123Z") == MOMENT.replace(microsecond=123000)


def test_stamp_converts_other_time_zones() -> None:
    from datetime import timedelta, timezone

    local = MOMENT.astimezone(timezone(timedelta(hours=5)))
    assert format_stamp(local) == "20261204T153000123Z"


def test_names_sort_by_time() -> None:
    # The labels sort the other way round, so only the time stamp can put these in order.
    oldest = backup_name(MOMENT.replace(year=2025), "zzz", "sqlite")
    middle = backup_name(MOMENT, "mmm", "pg_dump-custom")
    newest = backup_name(MOMENT.replace(microsecond=999000), "aaa", "sqlite")
    assert sorted([newest, oldest, middle]) == [oldest, middle, newest]


def test_name_of_table_backup() -> None:
    table_backup = backup_name(MOMENT, "shop-orders", "pg_dump-custom")
    assert table_backup == "20261204T153000123Z-shop-orders.dump"
    assert backup_name(MOMENT, "shop", "sqlite") == "20261204T153000123Z-shop.sqlite"


@pytest.mark.parametrize(
    "name", ["20261204T153000123Z-app.dump", "20261204T153000123Z-a_b-c.sqlite"]
)
def test_valid_backup_names(name: str) -> None:
    assert validate_backup_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["../20261204T153000123Z-app.dump", "sub/20261204T153000123Z-app.dump", "a\\b.dump", "..", "."],
)
def test_backup_name_with_path_rejected(name: str) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_backup_name(name)
    assert "without a path" in str(caught.value)


@pytest.mark.parametrize(
    "name",
    ["", "app.dump", "20261204T153000123Z-app.dump.json", "20261204T153000123Z-app.tar",
     ".20261204T153000123Z-app.dump", "20261204T153000123Z-a b.dump"],
)
def test_backup_name_not_matching_pattern(name: str) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_backup_name(name)
    assert "travi db backup list" in str(caught.value)


@pytest.mark.parametrize("name", ["items", "public.items", "_x", "Orders_2026", "a" * 63])
def test_valid_table_names(name: str) -> None:
    assert validate_table_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1items", "items;drop", 'it"ems', "a.b.c", "public.", ".items", "a" * 64, "it ems",
     "items--"],
)
def test_invalid_table_names(name: str) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_table_name(name)
    assert caught.value.field == "table"


def test_resolve_exact_and_unqualified() -> None:
    available = ["public.items", "public.other", "audit.log"]
    assert resolve_table("public.items", available, "db") == "public.items"
    assert resolve_table("items", available, "db") == "public.items"
    assert resolve_table("log", available, "db") == "audit.log"


def test_resolve_ignores_case_only_without_exact_match() -> None:
    assert resolve_table("ITEMS", ["items"], "db") == "items"
    assert resolve_table("Items", ["Items", "items"], "db") == "Items"


def test_resolve_ambiguous_asks_for_schema() -> None:
    with pytest.raises(TableNotFoundError) as caught:
        resolve_table("items", ["public.items", "archive.items"], "db")
    assert "qualify it with its schema" in str(caught.value)


def test_resolve_unknown_lists_tables() -> None:
    with pytest.raises(TableNotFoundError) as caught:
        resolve_table("missing", ["items", "other"], "the database x")
    message = str(caught.value)
    assert "'missing' not found in the database x" in message
    assert "items, other" in message


def test_quote_identifier() -> None:
    assert quote_identifier("public.items") == '"public"."items"'
    assert quote_identifier("Items") == '"Items"'
