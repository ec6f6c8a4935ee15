"""Sizes and the backup table as ``travi db backup list`` prints them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.backup_cli import LIST_COLUMNS, format_size, format_table, list_row
from shared.backup import BackupInfo


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
     (5 * 1024**2, "5.0 MiB"), (3 * 1024**4, "3072.0 GiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_table_columns_aligned() -> None:
    rows = [("a", "b", "c", "d", "e", "ok"), ("long-name", "b", "c", "d", "e", "mismatch")]
    lines = format_table(rows)
    header, first, second = lines.splitlines()
    assert header.split("  ")[0].strip() == LIST_COLUMNS[0]
    assert first.index("ok") == second.index("mismatch") == header.index("CHECKSUM")


def test_list_row_summarises_many_tables() -> None:
    info = BackupInfo(
        name="20261204T153000123Z-app.sqlite", path=Path("/b/x"),
        created_at=datetime(2026, 12, 4, 15, 30, tzinfo=UTC), size=2048, sha256="0" * 64,
        database="sqlite:////data/app.db", tables=[f"t{i}" for i in range(6)], table=None,
        format="sqlite", checksum_status="ok",
    )
    row = list_row(info)
    assert row[1] == "2026-12-04 15:30:00"
    assert row[2] == "2.0 KiB"
    assert row[4] == "t0, t1, t2, t3 +2 more"
    assert row[5] == "ok"


def test_list_row_without_sidecar() -> None:
    info = BackupInfo(
        name="20261204T153000123Z-app.dump", path=Path("/b/x"),
        created_at=datetime(2026, 12, 4, 15, 30, tzinfo=UTC), size=10, sha256=None,
        database=None, tables=[], table=None, format="pg_dump-custom",
        checksum_status="missing sidecar",
    )
    assert list_row(info)[3:] == ("?", "?", "missing sidecar")
