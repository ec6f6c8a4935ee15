"""Alembic environment: runs every service's branch against one database.

On PostgreSQL an advisory lock serialises migrations, so replicas starting at the same time do
not apply the same revision twice.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

# A fixed key for pg_advisory_lock, shared by every TRAVI process.
MIGRATION_LOCK_KEY = 7_318_021_401


def run_migrations() -> None:
    """Apply the requested migrations on one connection."""
    url = context.config.attributes["database_url"]
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                render_as_batch=connection.dialect.name == "sqlite",
                version_table="travi_alembic_version",
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_postgres:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                connection.commit()
    engine.dispose()


run_migrations()
