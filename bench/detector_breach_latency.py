"""Time from the metrics message that crosses the error-rate threshold to the breach event.

Starts ``travi up`` (all five services, embedded nats-server and SQLite) in a temporary state
folder and listens on ``rollback.breach.production.checkout``. Each run publishes healthy traffic
of version v1 of ``production/checkout``, then traffic of a new, bad version: one request every
``--interval`` seconds, every ``--error-every``-th one failing. The crossing message is
the first one after which the window holds at least ``min_samples`` requests with an error
share above the threshold, computed here the same way the detector does. Run:

    .venv/bin/python bench/detector_breach_latency.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats

from shared.client import RUNTIME_FILE

SUBJECT = "metrics.production.checkout"
BREACHES = "rollback.breach.production.checkout"


async def wait_for_runtime(state: Path, process: subprocess.Popen, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"travi up exited with code {process.returncode}")
        path = state / RUNTIME_FILE
        if path.exists():
            return json.loads(path.read_text())
        await asyncio.sleep(0.2)
    raise TimeoutError("travi up did not start within the timeout")


def request(version: str, failed: bool) -> bytes:
    observation = {"kind": "request", "at": datetime.now(UTC).isoformat(),
                   "latency_ms": 40.0, "status": 500 if failed else 200}
    return json.dumps({"service": "checkout", "environment": "production", "version": version,
                       "observations": [observation]}).encode()


async def measure(nats_url: str, version: str, arguments: argparse.Namespace) -> tuple[float, dict]:
    connection = await nats.connect(nats_url)
    js = connection.jetstream()
    breaches: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()

    async def on_breach(msg) -> None:  # noqa: ANN001 - nats Msg
        await breaches.put((time.monotonic(), json.loads(msg.data)))

    await connection.subscribe(BREACHES, cb=on_breach)
    for _ in range(arguments.min_samples):
        await js.publish(SUBJECT, request("v1", failed=False))

    total = errors = 0
    crossed_at: float | None = None
    while crossed_at is None:
        total += 1
        failed = total % arguments.error_every == 0
        errors += failed
        await js.publish(SUBJECT, request(version, failed))
        if total >= arguments.min_samples and errors / total > arguments.error_rate:
            crossed_at = time.monotonic()
        else:
            await asyncio.sleep(arguments.interval)
    arrived, breach = await asyncio.wait_for(breaches.get(), 30.0)
    await asyncio.sleep(1.0)
    extra = breaches.qsize()
    await connection.close()
    if extra:
        raise AssertionError(f"{extra + 1} breach events arrived; expected one")
    return arrived - crossed_at, breach


async def main(arguments: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="travi-latency-") as folder:
        state = Path(folder) / "state"
        environment = {**os.environ, "TRAVI_STATE_DIR": str(state), "TRAVI_HTTP_PORT": "0",
                       "TRAVI_LOG_LEVEL": "WARNING"}
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("travi")), "up"],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            runtime = await wait_for_runtime(state, process)
            delays = []
            for run in range(arguments.runs):
                delay, breach = await measure(runtime["nats_url"], f"v{run + 2}", arguments)
                delays.append(delay)
                print(f"breach {breach['trigger']} of {breach['version']} "
                      f"(measured {breach['measured']:.3f}, {breach['samples']} samples) "
                      f"{delay * 1000:.0f} ms after the crossing message")
            print(f"max {max(delays) * 1000:.0f} ms over {len(delays)} run(s)")
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.01, help="Seconds between requests.")
    parser.add_argument("--error-every", type=int, default=2, help="Every n-th request fails.")
    parser.add_argument("--min-samples", type=int, default=20, help="The detector's min_samples.")
    parser.add_argument("--error-rate", type=float, default=0.10, help="The detector's threshold.")
    parser.add_argument("--runs", type=int, default=1, help="Measurements (one bad version each).")
    asyncio.run(main(parser.parse_args()))
