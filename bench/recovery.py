"""Time to recovery, and the latency from a breach to the plan executing.

Usage: .venv/bin/python bench/recovery.py [--demo-runs 3] [--breaches 100] [--services all]

1. Time to recovery: ``travi demo``'s story run ``--demo-runs`` times in this process, each on a
   fresh embedded system, from the first request served by the bad version until the good version
   passes its health check again.
2. Breach to executing: the planner and the executor (with ``--services all``, all five
   services in one process, as ``travi up`` runs them) on an embedded nats-server and SQLite
   (or ``--database-url``), with the default ``none`` driver. For each of ``--breaches``
   services, two deployments are recorded and a breach is published. The latency runs from the
   breach's publish to the executor's ``validate_target`` step event as a core NATS subscriber
   receives it. The next breach is sent ``--gap`` seconds (0.2 by default) after the previous
   plan's outcome, so each is measured on an idle system. The baseline, measured in the same
   run, is a JetStream publish to the same subscriber (one hop, no service), in a stream of its
   own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import nats
from nats.js.api import StorageType, StreamConfig

from services.demo import run_demo
from services.runner import SERVICE_NAMES, Runtime
from shared.bus import declare_streams, make_broker, publish
from shared.contracts import BreachDetected
from shared.embedded import EmbeddedNats
from shared.fake_slack import FakeSlack
from shared.logs import setup_logging
from shared.settings import Settings

TOKEN = "bench-operator"
SERVICES = ("planner", "executor")
# The baseline goes through a stream of its own that no service consumes, so measuring it
# leaves every service idle for the breach that follows.
PROBE_STREAM = "BENCH_PROBE"
PROBE_PREFIX = "benchprobe"


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    rank = max(1, int(-(-share * len(ordered) // 1)))
    return ordered[rank - 1]


async def time_to_recovery(runs: int) -> tuple[list[float], list[float]]:
    """Run the demo story ``runs`` times; return each time to recovery in seconds and each
    breach-to-executing time in milliseconds, as the demo measured them."""
    recoveries, breaches = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            result = await run_demo(Settings(state_dir=Path(folder)), write=lambda _line: None)
        if result.time_to_recovery_s is None:
            raise RuntimeError(f"the demo ended without a recovery: outcome {result.outcome}")
        recoveries.append(result.time_to_recovery_s)
        if result.breach_to_executing_ms is not None:
            breaches.append(result.breach_to_executing_ms)
    return recoveries, breaches


async def breach_to_executing(
    count: int,
    database_url: str | None = None,
    services: Sequence[str] = SERVICES,
    gap: float = 0.2,
) -> tuple[list[float], list[float]]:
    """Return the breach-to-executing latencies and the one-hop baseline, in milliseconds.

    ``services`` must include the planner and the executor. With the notifier, it posts to a
    local Slack-compatible server.
    """
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedNats(Path(folder) / "nats").start()
        slack = FakeSlack().start() if "notifier" in services else None
        notifier = {"slack_webhook_url": slack.url + "/services/T0/B0/bench"} if slack else {}
        settings = Settings(state_dir=Path(folder), nats_url=server.url, http_port=0,
                            database_url=database_url, notifier=notifier,
                            tokens={TOKEN: "operator:bench"}, log_level="WARNING")
        try:
            async with Runtime(settings, services, freeze_heap=True) as runtime:
                return await _measure(runtime, server.url, count, gap)
        finally:
            if slack is not None:
                slack.stop()
            server.stop()


def parse_services(value: str) -> tuple[str, ...]:
    """Return the services named in ``value`` (comma-separated, or ``all``)."""
    names = SERVICE_NAMES if value == "all" else tuple(name.strip() for name in value.split(","))
    if not {"planner", "executor"} <= set(names):
        raise argparse.ArgumentTypeError("--services must include planner and executor")
    return names


async def _measure(
    runtime: Runtime, url: str, count: int, gap: float
) -> tuple[list[float], list[float]]:
    arrivals: dict[str, float] = {}
    connection = await nats.connect(url)

    async def on_step(message) -> None:  # noqa: ANN001 - nats-py message
        service = message.subject.rsplit(".", 1)[1]
        if b'"validate_target"' in message.data and b'"running"' in message.data:
            arrivals.setdefault(service, time.perf_counter())

    async def on_probe(message) -> None:  # noqa: ANN001
        arrivals.setdefault(message.subject, time.perf_counter())

    async def on_outcome(message) -> None:  # noqa: ANN001
        arrivals.setdefault("outcome." + message.subject.rsplit(".", 1)[1], time.perf_counter())

    await connection.subscribe("rollback.step.>", cb=on_step)
    await connection.subscribe("rollback.outcome.>", cb=on_outcome)
    await connection.subscribe(f"{PROBE_PREFIX}.>", cb=on_probe)
    broker = make_broker(url)
    await broker.connect()
    await declare_streams(broker, runtime.settings)
    await connection.jetstream().add_stream(
        StreamConfig(name=PROBE_STREAM, subjects=[f"{PROBE_PREFIX}.>"], storage=StorageType.FILE)
    )

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=runtime.base_url, headers=headers) as api:
        for index in range(count):
            for version in ("v1", "v2"):
                response = await api.post("/api/admin/deployments", json={
                    "environment": "production", "service": f"svc-{index}", "version": version,
                    "status": "succeeded", "actor": "bench"})
                response.raise_for_status()
    await asyncio.sleep(1.0)

    latencies, baseline = [], []
    for index in range(count):
        service = f"svc-{index}"
        probe = f"{PROBE_PREFIX}.probe-{index}"
        sent = time.perf_counter()
        body = _breach("bench", f"probe-{index}")
        await broker.publish(body.model_dump(mode="json"), probe, stream=PROBE_STREAM,
                             headers={"Nats-Msg-Id": str(body.event_id)})
        await _wait_for(arrivals, probe)
        baseline.append((arrivals[probe] - sent) * 1000)

        sent = time.perf_counter()
        await publish(broker, f"rollback.breach.production.{service}", _breach("production", service))
        await _wait_for(arrivals, service)
        latencies.append((arrivals[service] - sent) * 1000)
        # Each breach is measured on an idle system: the previous plan has finished, and the
        # planner and executor have recorded its outcome.
        await _wait_for(arrivals, "outcome." + service)
        await asyncio.sleep(gap)
    await broker.stop()
    await connection.close()
    return latencies, baseline


def _breach(environment: str, service: str) -> BreachDetected:
    return BreachDetected(environment=environment, service=service, version="v2",
                          trigger="error_rate", measured=0.25, threshold=0.1,
                          window_seconds=60, samples=20)


async def _wait_for(arrivals: dict[str, float], key: str, timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while key not in arrivals:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no event for {key} within {timeout} s")
        await asyncio.sleep(0.0005)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo-runs", type=int, default=3)
    parser.add_argument("--breaches", type=int, default=100)
    parser.add_argument("--database-url", default=None,
                        help="An empty database for the breach part; SQLite in a temporary folder by default.")
    parser.add_argument("--gap", type=float, default=0.2,
                        help="Seconds between a plan's outcome and the next breach.")
    parser.add_argument("--services", type=parse_services, default=SERVICES,
                        help="Services run in the process for the breach part, comma-separated, "
                             "or 'all' as travi up runs them (default: planner,executor).")
    args = parser.parse_args()
    setup_logging("WARNING", "text")

    if args.breaches:
        latencies, baseline = await breach_to_executing(
            args.breaches, args.database_url, args.services, args.gap
        )
        print(f"breach to executing, {len(latencies)} breaches: p50 {percentile(latencies, 0.5):.1f} ms, "
              f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")
        print(f"baseline JetStream publish to subscriber: p50 {percentile(baseline, 0.5):.2f} ms, "
              f"p99 {percentile(baseline, 0.99):.2f} ms")
        print(f"ratio of p50s: {percentile(latencies, 0.5) / percentile(baseline, 0.5):.1f}")

    if args.demo_runs:
        recoveries, breaches = await time_to_recovery(args.demo_runs)
        print(f"time to recovery, {len(recoveries)} demo runs: median {statistics.median(recoveries):.2f} s, "
              f"max {max(recoveries):.2f} s ({', '.join(f'{value:.2f}' for value in recoveries)})")
        print(f"breach to executing in the demo (all services, live traffic): "
              f"{', '.join(f'{value:.0f}' for value in breaches)} ms")


if __name__ == "__main__":
    asyncio.run(main())
