"""The releases driver end to end: ``current`` moves from v1.2.0 to v1.1.0, and the restarted
app process passes its health check with the restored version."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.runner import Runtime
from shared.embedded import free_port
from tests.integration.executor_helpers.harness import (
    HELPERS,
    BusTap,
    Commander,
    bodies,
    plan_created,
    read_stream,
)

pytestmark = pytest.mark.nats

STEPS = (
    "validate_target",
    "pause_traffic",
    "drain_connections",
    "switch_version",
    "verify_health",
    "resume_traffic",
    "cleanup",
    "notify",
)


def wait_for_version(port: int, version: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["version"] == version:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the app on port {port} did not answer with {version}")
        time.sleep(0.05)


@pytest.fixture
def releases(tmp_path: Path):
    """A releases folder with v1.1.0 and v1.2.0, ``current`` on v1.2.0, and its app running."""
    root = tmp_path / "app"
    for version in ("v1.1.0", "v1.2.0"):
        folder = root / "releases" / version
        folder.mkdir(parents=True)
        shutil.copy(HELPERS / "tiny_app.py", folder / "tiny_app.py")
    (root / "current").symlink_to(Path("releases") / "v1.2.0")
    port = free_port()
    restart = [sys.executable, str(HELPERS / "restart_app.py"), str(root), str(port)]
    subprocess.run(restart, check=True, timeout=30)
    wait_for_version(port, "v1.2.0")
    yield root, port, restart
    pid_file = root / "app.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


async def test_releases_switch_restarts_app(nats_server, make_settings, sqlite_url, releases):
    root, port, restart = releases
    first_pid = (root / "app.pid").read_text()
    config = {
        "driver": "releases",
        "options": {
            "root": str(root),
            "restart": restart,
            "health_url": f"http://127.0.0.1:{port}/health",
            "health_expect": '"version": "{version}"',
            "health_interval_seconds": 0.1,
        },
    }
    settings = make_settings(
        nats_url=nats_server.url,
        database_url=sqlite_url,
        executor={"heartbeat_seconds": 0.2, "services": {"checkout": config}},
    )
    plan = plan_created()

    async with Runtime(settings, ["executor"]), BusTap(nats_server.url) as tap:
        async with Commander(nats_server.url) as commander:
            await commander.execute(plan)
        await tap.wait_for_outcomes(1, timeout=60)

    outcomes = bodies(await read_stream(nats_server.url, "rollback.outcome.>"))
    assert [o["outcome"] for o in outcomes] == ["completed"], outcomes
    assert os.readlink(root / "current") == "releases/v1.1.0"
    response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["version"] == "v1.1.0"
    assert (root / "app.pid").read_text() != first_pid
    ends = [
        b
        for b in bodies(await read_stream(nats_server.url, "rollback.step.>"))
        if b["status"] == "succeeded"
    ]
    assert [b["step"] for b in ends] == list(STEPS)
    for body in ends:
        assert body["duration_ms"] is not None, body["step"]
        assert body["duration_ms"] >= 0
