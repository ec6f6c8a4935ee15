"""``travi up`` as a user runs it: a real process, SIGTERM, and a second start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest

from shared.embedded import free_port

pytestmark = [pytest.mark.nats, pytest.mark.slow]

TRAVI = str(Path(sys.executable).with_name("travi"))


def start_up(state_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAVI_")}
    env.update(TRAVI_STATE_DIR=str(state_dir), TRAVI_HTTP_PORT=str(port), TRAVI_LOG_FORMAT="json")
    return subprocess.Popen([TRAVI, "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"travi up exited early:\n{process.stdout.read()}")
        try:
            response = httpx.get(url + "/api/health", timeout=1.0)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("travi up did not answer /api/health")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    return output


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


async def count_rollback_messages(nats_url: str) -> int:
    connection = await nats.connect(nats_url)
    try:
        info = await connection.jetstream().stream_info("TRAVI_DEPLOYMENTS")
        return info.state.messages
    finally:
        await connection.close()


async def test_up_serves_health_and_stops_cleanly(tmp_path):
    state_dir = tmp_path / "state"
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    process = start_up(state_dir, port)
    body = wait_healthy(url, process)
    assert body["status"] == "healthy"
    assert set(body["checks"]) == {"database", "bus", "memory"}
    live = httpx.get(url + "/api/health/live")
    assert live.json() == {"status": "healthy"}
    assert live.headers["x-content-type-options"] == "nosniff"
    assert live.headers["x-frame-options"] == "DENY"
    assert httpx.get(url + "/api/health/ready").status_code == 200
    assert "paths" in httpx.get(url + "/openapi.json").json()
    assert httpx.get(url + "/asyncapi.json").json()["asyncapi"].startswith("3.")

    runtime = json.loads((state_dir / "runtime.json").read_text())
    nats_pid = int((state_dir / "nats" / "nats-server.pid").read_text())
    token = (state_dir / "token").read_text().strip()
    deployment = {"environment": "production", "service": "checkout", "version": "v1.1.0",
                  "status": "succeeded", "actor": "test"}
    connection = await nats.connect(runtime["nats_url"])
    await connection.jetstream().publish("deployments.production.checkout", json.dumps(
        {"event_id": "5b1d8f7e-3a41-4f4c-9c39-0c2b1c1f9a01", "schema_version": 1, **deployment}).encode())
    await connection.close()

    output = stop(process)
    assert process.returncode == 0, output
    assert token in output
    assert f"127.0.0.1:{port}" in output
    assert not process_alive(nats_pid)
    assert not (state_dir / "runtime.json").exists()

    second = start_up(state_dir, port)
    wait_healthy(url, second)
    second_runtime = json.loads((state_dir / "runtime.json").read_text())
    assert await count_rollback_messages(second_runtime["nats_url"]) == 1
    output = stop(second)
    assert second.returncode == 0, output
    assert (state_dir / "token").read_text().strip() == token
    assert token not in output
