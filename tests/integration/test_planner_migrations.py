"""The planner's migration matches its models, and downgrades cleanly, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

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


def test_deferred_revision_round_trip(database_url):
    """The second revision adds its columns to tables with rows and removes them again."""
    folders = migration_folders(["planner"])
    upgrade(database_url, folders, "planner@099211b93d65")
    engine = create_engine(sync_url(database_url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO planner_bad_versions (environment, service, version, plan_id, "
                "marked_at) VALUES ('production', 'checkout', 'v3', NULL, CURRENT_TIMESTAMP)"
            )
        )

    upgrade(database_url, folders)
    with engine.connect() as connection:
        reason = connection.execute(text("SELECT reason FROM planner_bad_versions")).scalar_one()
    assert reason == ""
    assert planner_differences(database_url) == []

    downgrade(database_url, folders, "planner@099211b93d65")
    columns = {c["name"] for c in inspect(engine).get_columns("planner_suppressions")}
    indexes = {i["name"] for i in inspect(engine).get_indexes("planner_suppressions")}
    bad_columns = {c["name"] for c in inspect(engine).get_columns("planner_bad_versions")}
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT version FROM planner_bad_versions")).all()
    engine.dispose()
    assert "recheck_at" not in columns
    assert "breach_json" not in columns
    assert "ix_planner_suppressions_deferred" not in indexes
    assert "ix_planner_suppressions_breach_event_id" in indexes
    assert "reason" not in bad_columns
    assert rows == [("v3",)]
