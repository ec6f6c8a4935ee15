"""Database access: SQLAlchemy 2 async engines for SQLite and PostgreSQL, and migrations.

Every service owns its tables and its own Alembic branch (labelled with the service name), in
``services/<name>/migrations``. The runner passes those folders to :func:`upgrade`; this
package imports no service.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from shared.errors import ConfigurationError
from shared.sqlite_driver import OneTripDBAPI

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class Base(DeclarativeBase):
    """Declarative base of every service's tables; each service uses its own table prefix."""


def async_url(url: str) -> str:
    """Return ``url`` with an async driver: aiosqlite for SQLite, psycopg for PostgreSQL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigurationError(
        f"unsupported database {backend!r} in TRAVI_DATABASE_URL: use sqlite:///PATH "
        "or postgresql://USER@HOST/DB"
    )


def sync_url(url: str) -> str:
    """Return ``url`` with the synchronous driver Alembic uses."""
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@dataclass
class Database:
    """An async engine and its session factory."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def is_sqlite(self) -> bool:
        """Whether the engine talks to SQLite."""
        return self.engine.dialect.name == "sqlite"

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises when the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def open_database(url: str) -> Database:
    """Create the engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    full_url = async_url(url)
    parsed = make_url(full_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    # A pre-ping finds server connections that PostgreSQL dropped. An SQLite file has none to
    # drop, and the ping would cost an extra thread hop in aiosqlite on every checkout.
    if is_sqlite:
        engine = create_async_engine(full_url, module=OneTripDBAPI())
    else:
        engine = create_async_engine(full_url, pool_pre_ping=True)
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))


def alembic_config(url: str, version_locations: Sequence[Path]) -> Config:
    """Build an Alembic configuration over the given migration folders."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "version_locations", " ".join(str(Path(p).resolve()) for p in version_locations)
    )
    config.set_main_option("path_separator", "space")
    config.attributes["database_url"] = sync_url(url)
    return config


def upgrade(url: str, version_locations: Sequence[Path], target: str = "heads") -> None:
    """Apply migrations up to ``target`` (blocking; run it in a thread from async code)."""
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url, version_locations), target)


def downgrade(url: str, version_locations: Sequence[Path], target: str = "base") -> None:
    """Revert migrations down to ``target`` (blocking)."""
    command.downgrade(alembic_config(url, version_locations), target)
