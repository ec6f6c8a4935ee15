"""Fixtures shared by every test: a real nats-server and real databases.

PostgreSQL comes from TRAVI_TEST_DATABASE_URL, else from testcontainers when a Docker engine
responds, else from a throwaway cluster made with initdb and pg_ctl. Each test gets a database of
its own on that server. When none is available, tests that need it are skipped, except under
CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from services.runner import SERVICE_NAMES, Runtime
from shared.embedded import EmbeddedNats, free_port
from shared.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_TOKENS = {"operator-token": "operator:alice", "viewer-token": "viewer:victor", "producer-token": "producer:paula"}
OPERATOR = {"Authorization": "Bearer operator-token"}
VIEWER = {"Authorization": "Bearer viewer-token"}
PRODUCER = {"Authorization": "Bearer producer-token"}


def missing(reason: str) -> None:
    """Skip on a laptop, fail under CI, so a missing service is always visible."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server with JetStream on a free loopback port, with data in the test's folder."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


def _postgres_from_testcontainers() -> tuple[str, Callable[[], None]] | None:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return None
    try:
        import docker
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=2)
    except Exception:  # noqa: BLE001 - no Docker engine is configured: try the next source.
        return None
    try:
        client.ping()
    except Exception:  # noqa: BLE001 - no Docker engine responds: try the next source.
        return None
    finally:
        client.close()
    try:
        container = PostgresContainer("postgres:16-alpine", driver="psycopg").start()
    except Exception:  # noqa: BLE001 - no Docker engine: try the next source.
        return None
    return container.get_connection_url(), container.stop


def _postgres_from_initdb() -> tuple[str, Callable[[], None]] | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    initdb = shutil.which("initdb") or (str(candidates[0]) if candidates else None)
    if initdb is None:
        return None
    bin_dir = Path(initdb).parent
    data = Path(tempfile.mkdtemp(prefix="travi-pg-"))
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    # -l sends the server's output to a file; without it the server keeps the captured pipe open.
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)

    def stop() -> None:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """The URL of a PostgreSQL server for this session, or None when there is none."""
    url = os.environ.get("TRAVI_TEST_DATABASE_URL")
    if url:
        yield url
        return
    for source in (_postgres_from_testcontainers, _postgres_from_initdb):
        found = source()
        if found is not None:
            server_url, stop = found
            yield server_url
            stop()
            return
    yield None


@pytest.fixture
def postgres_url(postgres_server: str | None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if postgres_server is None:
        missing("no PostgreSQL: set TRAVI_TEST_DATABASE_URL, run Docker, or install initdb")
    admin = make_url(postgres_server).set(drivername="postgresql")
    name = f"travi_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = admin.render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        missing(f"PostgreSQL at {admin.render_as_string()} is not reachable: {exc}")
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'travi.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build settings for a test, isolated from the environment's TRAVI_ variables."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "state_dir": tmp_path / "state",
            "http_port": 0,
            "tokens": dict(TEST_TOKENS),
            "log_format": "text",
        }
        values.update(overrides)
        return Settings.model_validate(values)

    return build


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An SQLite database file in the test's folder."""
    return f"sqlite:///{tmp_path / 'travi.db'}"


@pytest.fixture
async def system(
    nats_server: EmbeddedNats, make_settings: Callable[..., Settings], sqlite_url: str
) -> AsyncIterator[Runtime]:
    """All five services in this event loop, on the test's nats-server and SQLite."""
    settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url)
    async with Runtime(settings, SERVICE_NAMES) as runtime:
        yield runtime
