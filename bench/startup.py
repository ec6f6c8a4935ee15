"""Time from ``travi up`` to a healthy ``/api/health``, against a bare nats-server start.

Usage: .venv/bin/python bench/startup.py [--runs 5]

Both are measured in the same run, on fresh state folders: the baseline is the embedded
nats-server alone (start to accepting connections), the subject is the whole ``travi up``
(nats-server, migrations, five services, HTTP) to its first 200 from /api/health.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from shared.embedded import EmbeddedNats, free_port


def time_nats() -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        server = EmbeddedNats(Path(folder)).start()
        elapsed = time.perf_counter() - started
        server.stop()
    return elapsed


def time_up() -> float:
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAVI_")}
        env.update(TRAVI_STATE_DIR=folder, TRAVI_HTTP_PORT=str(port))
        started = time.perf_counter()
        process = subprocess.Popen([str(Path(sys.executable).with_name("travi")), "up"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    baseline = [time_nats() for _ in range(args.runs)]
    subject = [time_up() for _ in range(args.runs)]
    base, up = statistics.median(baseline), statistics.median(subject)
    print(f"nats-server start, median of {args.runs}: {base * 1000:.0f} ms")
    print(f"travi up to healthy, median of {args.runs}: {up * 1000:.0f} ms (max {max(subject) * 1000:.0f} ms)")
    print(f"ratio up / nats-server: {up / base:.1f}")


if __name__ == "__main__":
    main()
