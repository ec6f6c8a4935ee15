"""Detector throughput against the raw nats-py JetStream pull-and-ack rate, in the same run.

For each shape (1000 observations per message, then one per message) the script fills the
metrics stream of a fresh nats-server, then drains it with three durable pull consumers, one
after the other, each reading the whole stream:

* ``raw ack each``: fetch(N) and ``ack()`` every message (explicit acks), nothing else;
* ``raw ack last``: fetch(N) and ack the batch's last message (``AckPolicy.ALL``), nothing else;
* ``detector``: the detector's own consumer loop (decode, validate each observation, apply to
  the windows, evaluate the triggers, ack the batch's last message).

Each consumer runs ``--rounds`` times in turn; the median rate is reported. Run:

    .venv/bin/python bench/detector_throughput.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from services.detector.consumer import MetricsConsumer
from services.detector.publisher import BreachPublisher
from services.detector.triggers import Detector
from shared.bus import METRICS_STREAM, make_broker
from shared.embedded import EmbeddedNats
from shared.settings import Settings

SUBJECT = "metrics.production.checkout"


def make_message(index: int, size: int, start: datetime) -> bytes:
    observations = []
    for offset in range(size):
        moment = start + timedelta(microseconds=(index * size + offset) * 50)
        observations.append({
            "kind": "request",
            "at": moment.isoformat().replace("+00:00", "Z"),
            "latency_ms": 20.0 + (offset % 97),
            "status": 500 if offset % 50 == 0 else 200,
        })
    return orjson.dumps({"service": "checkout", "environment": "production", "version": "v1",
                         "observations": observations})


async def fill(js, messages: int, size: int) -> None:  # noqa: ANN001 - JetStreamContext
    await js.purge_stream(METRICS_STREAM.name)
    start = datetime.now(UTC) - timedelta(seconds=30)
    for index in range(messages):
        await js.publish_async(SUBJECT, make_message(index, size, start))
    await js.publish_async_completed()


async def raw_drain(  # noqa: ANN001 - js is a nats-py JetStreamContext
    js, durable: str, total: int, fetch: int, ack_all: bool
) -> float:
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.ALL if ack_all else AckPolicy.EXPLICIT,
        max_ack_pending=20_000,
        filter_subject="metrics.>",
    )
    await js.add_consumer(METRICS_STREAM.name, config)
    subscription = await js.pull_subscribe_bind(durable, stream=METRICS_STREAM.name)
    received = 0
    started = time.perf_counter()
    while received < total:
        messages = await subscription.fetch(fetch, timeout=2.0)
        if ack_all:
            await messages[-1].ack()
        else:
            for msg in messages:
                await msg.ack()
        received += len(messages)
    elapsed = time.perf_counter() - started
    await subscription.unsubscribe()
    await js.delete_consumer(METRICS_STREAM.name, durable)
    return elapsed


async def detector_drain(settings: Settings, durable: str, total: int) -> float:
    settings = settings.model_copy(
        update={"detector": settings.detector.model_copy(update={"consumer_name": durable})}
    )
    broker = make_broker(settings.nats_url)
    await broker.connect()
    consumer = MetricsConsumer(
        settings, Detector(settings.detector), BreachPublisher(broker, timeout=5.0), broker
    )
    await consumer.connect()
    await consumer.bind(0)
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    while consumer.applied_through < total:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await consumer.stop()
    await broker.stop()
    return elapsed


async def scenario(  # noqa: ANN001 - js is a nats-py JetStreamContext
    settings: Settings, js, messages: int, size: int, rounds: int
) -> dict[str, float]:
    await fill(js, messages, size)
    fetch = settings.detector.fetch_batch
    runs: dict[str, list[float]] = {"raw ack each": [], "raw ack last": [], "detector": []}
    drains: dict[str, Callable[[str], Awaitable[float]]] = {
        "raw ack each": lambda name: raw_drain(js, name, messages, fetch, ack_all=False),
        "raw ack last": lambda name: raw_drain(js, name, messages, fetch, ack_all=True),
        "detector": lambda name: detector_drain(settings, name, messages),
    }
    for round_index in range(rounds):
        for label, drain in drains.items():
            name = f"bench-{label.replace(' ', '-')}-{size}-{round_index}"
            runs[label].append(messages / await drain(name))
    return {label: statistics.median(rates) for label, rates in runs.items()}


def report(size: int, rates: dict[str, float]) -> None:
    print(f"\n{size} observation(s) per message")
    print(f"{'consumer':<14} {'messages/s':>12} {'observations/s':>15} {'of ack each':>12} "
          f"{'of ack last':>12}")
    for label, rate in rates.items():
        print(f"{label:<14} {rate:>12,.0f} {rate * size:>15,.0f} "
              f"{rate / rates['raw ack each']:>12.2f} {rate / rates['raw ack last']:>12.2f}")


async def main(arguments: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="travi-bench-") as folder:
        server = EmbeddedNats(Path(folder) / "nats").start()
        try:
            settings = Settings(nats_url=server.url, state_dir=Path(folder) / "state")
            connection = await nats.connect(server.url)
            js = connection.jetstream()
            await js.add_stream(StreamConfig(name=METRICS_STREAM.name, subjects=["metrics.>"],
                                             storage=StorageType.FILE))
            shapes = ((arguments.batch_messages, 1000), (arguments.single_messages, 1))
            for messages, size in shapes:
                report(size, await scenario(settings, js, messages, size, arguments.rounds))
            await connection.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-messages", type=int, default=300,
                        help="Messages of 1000 observations.")
    parser.add_argument("--single-messages", type=int, default=30_000,
                        help="Messages of one observation.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Runs of each consumer; the median is reported.")
    asyncio.run(main(parser.parse_args()))
