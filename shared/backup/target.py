"""Parsing of the database URL into the parts the backup code needs, with the password apart.

The password never reaches a command line, a log record, a file name, a sidecar or an error
message. :class:`DatabaseTarget` keeps it out of ``repr`` and offers :meth:`~DatabaseTarget.scrub`
to remove it from text that a client program or driver produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from shared.backup.errors import UnsupportedDatabaseError

DatabaseKind = Literal["postgresql", "sqlite"]

# Without a connect timeout, libpq waits for an unreachable server as long as the operating
# system's TCP connect does, which is minutes.
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10

_UNSAFE_LABEL_CHARACTERS = re.compile(r"[^A-Za-z0-9_]+")
_URL_HINT = "use sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


@dataclass(frozen=True)
class DatabaseTarget:
    """A database to back up or restore, described without its password."""

    kind: DatabaseKind
    # The URL with the password and query removed, e.g. postgresql://app@db:5432/app.
    description: str
    # Database name (PostgreSQL) or file stem (SQLite), used in backup file names.
    name: str
    sqlite_path: Path | None = None
    # libpq keyword/value connection string without a password, for --dbname and psycopg.
    conninfo: str = ""
    password: str | None = field(default=None, repr=False)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every occurrence of the password replaced by ``***``."""
        if self.password:
            return text.replace(self.password, "***")
        return text


def parse_database_url(url: str) -> DatabaseTarget:
    """Split a SQLAlchemy-style database URL into a :class:`DatabaseTarget`."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The parser's message does not contain the URL, and neither does ours: it may hold a
        # password.
        raise UnsupportedDatabaseError(f"the database URL cannot be parsed: {_URL_HINT}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_target(parsed)
    if backend in ("postgresql", "postgres"):
        return _postgres_target(parsed)
    raise UnsupportedDatabaseError(
        f"backups support SQLite and PostgreSQL, not {backend!r}: {_URL_HINT}"
    )


def file_label(value: str) -> str:
    """Return ``value`` reduced to letters, digits and ``_``, for use inside a file name."""
    label = _UNSAFE_LABEL_CHARACTERS.sub("_", value).strip("_")
    return label[:63] or "db"


def _sqlite_target(parsed: URL) -> DatabaseTarget:
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise UnsupportedDatabaseError(
            "the SQLite URL names no database file (in-memory and file: URIs cannot be backed "
            "up): use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = Path(database).expanduser().resolve()
    return DatabaseTarget(
        kind="sqlite", description=f"sqlite:///{path}", name=file_label(path.stem), sqlite_path=path
    )


def _postgres_target(parsed: URL) -> DatabaseTarget:
    if not parsed.database:
        raise UnsupportedDatabaseError(f"the PostgreSQL URL names no database: {_URL_HINT}")
    options: dict[str, str] = {}
    for key, value in parsed.query.items():
        options[key] = ",".join(value) if isinstance(value, tuple) else value
    password = parsed.password or options.pop("password", None)
    options.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT_SECONDS))

    keywords: dict[str, str] = {"dbname": parsed.database}
    if parsed.host:
        keywords["host"] = parsed.host
    if parsed.port:
        keywords["port"] = str(parsed.port)
    if parsed.username:
        keywords["user"] = parsed.username
    keywords.update(options)

    user = f"{parsed.username}@" if parsed.username else ""
    host = parsed.host or options.get("host", "")
    port = f":{parsed.port}" if parsed.port else ""
    return DatabaseTarget(
        kind="postgresql",
        description=f"postgresql://{user}{host}{port}/{parsed.database}",
        name=file_label(parsed.database),
        conninfo=" ".join(f"{key}={_conninfo_value(value)}" for key, value in keywords.items()),
        password=password or None,
    )


def _conninfo_value(value: str) -> str:
    """Quote a libpq connection-string value: single quotes, with ``\\`` and ``'`` escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
