"""The planner's migration matches its models, and downgrades cleanly, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from services.planner.models import Plan
from services.runner import migration_folders
from shared.db import downgrade, sync_url, upgrade

# Every service's tables that are imported land on this one metadata; only the planner's count.
METADATA = Plan.metadata


def planner_differences(url: str) -> list:
    engine = create_engine(sync_url(url))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), METADATA)
    engine.dispose()
    return [d for d in differences if "planner_" in repr(d)]


def planner_tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    names = {name for name in inspect(engine).get_table_names() if name.startswith("planner_")}
    engine.dispose()
    return names


def test_migration_matches_models(database_url):
    upgrade(database_url, migration_folders(["planner"]))

    assert planner_differences(database_url) == []


def test_migration_downgrades(database_url):
    upgrade(database_url, migration_folders(["planner"]))
    assert planner_tables(database_url) == {n for n in METADATA.tables if n.startswith("planner_")}

    downgrade(database_url, migration_folders(["planner"]), "planner@base")

    assert planner_tables(database_url) == set()
