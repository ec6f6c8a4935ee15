"""Alembic: every service's branch upgrades, downgrades and upgrades again."""

from __future__ import annotations

import sqlalchemy as sa

from services.runner import SERVICE_NAMES, migration_folders
from shared.db import downgrade, sync_url, upgrade


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url):
    folders = migration_folders(SERVICE_NAMES)

    upgrade(database_url, folders)
    after_first = table_names(database_url)
    for name in SERVICE_NAMES:
        assert f"{name}_inbox" in after_first

    downgrade(database_url, folders, "base")
    assert table_names(database_url) <= {"travi_alembic_version"}

    upgrade(database_url, folders)
    assert table_names(database_url) == after_first


def test_upgrade_twice_is_harmless(database_url):
    folders = migration_folders(SERVICE_NAMES)
    upgrade(database_url, folders)
    upgrade(database_url, folders)
    assert "planner_inbox" in table_names(database_url)
