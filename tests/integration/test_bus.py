"""The bus against a real nats-server: trace context, duplicates, dead letters and retries."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.bus import (
    DEAD_LETTER_STREAM,
    HEADER_ERROR,
    HEADER_ORIGINAL_SUBJECT,
    ROLLBACK_STREAM,
    Retry,
    declare_streams,
    make_broker,
    publish,
    subscribe,
)
from shared.contracts import BreachDetected
from shared.settings import Settings

pytestmark = pytest.mark.nats


def breach(**overrides: object) -> BreachDetected:
    values = {"environment": "production", "service": "checkout", "version": "v1.2.0",
              "trigger": "error_rate", "measured": 0.15, "threshold": 0.1, "samples": 20}
    values.update(overrides)
    return BreachDetected.model_validate(values)


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met within the timeout")
        await asyncio.sleep(0.02)


async def read_dead_letters(url: str, consumer: str) -> list:
    connection = await nats.connect(url)
    js = connection.jetstream()
    subscription = await js.pull_subscribe(f"deadletter.{consumer}", stream=DEAD_LETTER_STREAM.name)
    messages = await subscription.fetch(10, timeout=2)
    await connection.close()
    return messages


async def test_trace_id_crosses_publish_and_consume(nats_server):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    broker = make_broker(nats_server.url, tracer_provider=provider)
    received: list[BreachDetected] = []

    async def handle(event: BreachDetected, _msg) -> None:
        received.append(event)

    await broker.connect()
    await declare_streams(broker, Settings())
    subscribe(broker, subjects=["rollback.breach.>"], stream=ROLLBACK_STREAM, durable="trace-test",
              model=BreachDetected, handler=handle)
    await broker.start()
    with provider.get_tracer("test").start_as_current_span("origin") as origin:
        await publish(broker, "rollback.breach.production.checkout", breach())
    await wait_until(lambda: len(received) == 1)
    await broker.stop()

    trace_id = origin.get_span_context().trace_id
    process_spans = [s for s in exporter.get_finished_spans() if s.name.endswith("process")]
    assert process_spans, "the consumer recorded no span"
    assert process_spans[0].context.trace_id == trace_id


async def test_publish_twice_is_stored_once(nats_server):
    broker = make_broker(nats_server.url)
    await broker.connect()
    await declare_streams(broker, Settings())
    event = breach()
    await publish(broker, "rollback.breach.production.checkout", event)
    await publish(broker, "rollback.breach.production.checkout", event)
    info = await broker.connection.jetstream().stream_info(ROLLBACK_STREAM.name)
    await broker.stop()
    assert info.state.messages == 1


async def test_invalid_message_goes_to_dead_letter(nats_server):
    broker = make_broker(nats_server.url)
    handled: list[BreachDetected] = []

    async def handle(event: BreachDetected, _msg) -> None:
        handled.append(event)

    await broker.connect()
    await declare_streams(broker, Settings())
    subscribe(broker, subjects=["rollback.breach.>"], stream=ROLLBACK_STREAM, durable="dl-test",
              model=BreachDetected, handler=handle)
    await broker.start()
    js = broker.connection.jetstream()
    bad = {**breach().model_dump(mode="json"), "measured": "NaN"}
    await js.publish("rollback.breach.production.checkout", json.dumps(bad).encode())
    await publish(broker, "rollback.breach.production.checkout", breach())
    await wait_until(lambda: len(handled) == 1)
    await broker.stop()

    letters = await read_dead_letters(nats_server.url, "dl-test")
    assert len(letters) == 1
    assert letters[0].headers[HEADER_ORIGINAL_SUBJECT] == "rollback.breach.production.checkout"
    assert "measured" in letters[0].headers[HEADER_ERROR]


async def test_retry_then_dead_letter_after_max_deliver(nats_server):
    broker = make_broker(nats_server.url)
    attempts: list[int] = []

    async def handle(_event: BreachDetected, msg) -> None:
        attempts.append(msg.raw_message.metadata.num_delivered)
        raise Retry("database is down", delay=0.05)

    await broker.connect()
    await declare_streams(broker, Settings())
    subscribe(broker, subjects=["rollback.breach.>"], stream=ROLLBACK_STREAM, durable="retry-test",
              model=BreachDetected, handler=handle, max_deliver=3)
    await broker.start()
    await publish(broker, "rollback.breach.production.checkout", breach())
    await wait_until(lambda: len(attempts) == 3)
    await asyncio.sleep(0.3)
    await broker.stop()

    assert attempts == [1, 2, 3]
    letters = await read_dead_letters(nats_server.url, "retry-test")
    assert len(letters) == 1
    assert "gave up after 3 deliveries" in letters[0].headers[HEADER_ERROR]
