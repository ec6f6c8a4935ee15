"""The detector against a real nats-server: metrics in, breach events and dead letters out."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from services.runner import Runtime
from shared.bus import DEAD_LETTER_STREAM, HEADER_ERROR, ROLLBACK_STREAM
from shared.contracts import BreachDetected
from shared.reporter import HttpTransport, MetricsReporter, NatsTransport
from tests.conftest import PRODUCER, VIEWER

pytestmark = pytest.mark.nats


def at(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def request(status: int = 200, latency: float = 40.0, offset: float = 0.0) -> dict:
    return {"kind": "request", "at": at(offset), "latency_ms": latency, "status": status}


def health(ok: bool, check_id: str | None = None) -> dict:
    item = {"kind": "health_check", "at": at(), "check": "http", "ok": ok}
    if check_id is not None:
        item["check_id"] = check_id
    return item


def batch(*observations, service: str = "checkout", version: str = "v2") -> dict:
    return {"service": service, "environment": "production", "version": version,
            "observations": list(observations)}


class Harness:
    """A detector runtime, a NATS connection to publish with, and readers of its outputs."""

    def __init__(self, runtime: Runtime, connection: nats.NATS) -> None:
        self.runtime = runtime
        self.connection = connection
        self.js = connection.jetstream()

    @property
    def consumer(self):
        return self.runtime.services[0].consumer

    async def publish(self, document, subject: str = "metrics.production.checkout") -> int:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        ack = await self.js.publish(subject, body)
        return ack.seq

    async def applied(self, sequence: int, timeout: float = 10.0) -> None:
        """Wait until the detector has applied ``sequence`` and published what it found."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.consumer.applied_through < sequence:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the detector did not apply message {sequence} in time")
            await asyncio.sleep(0.02)
        await asyncio.wait_for(self.consumer.publisher.drained(), timeout)

    async def send(self, document, subject: str = "metrics.production.checkout") -> None:
        await self.applied(await self.publish(document, subject))

    async def breaches(self) -> list[BreachDetected]:
        return [BreachDetected.model_validate_json(m.data)
                for m in await self._read(ROLLBACK_STREAM.name, "rollback.breach.>")]

    async def dead_letters(self) -> list:
        return await self._read(DEAD_LETTER_STREAM.name, "deadletter.detector")

    async def _read(self, stream: str, subject: str) -> list:
        info = await self.js.stream_info(stream)
        if info.state.messages == 0:
            return []
        subscription = await self.js.pull_subscribe(
            subject, durable=None, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        messages = []
        try:
            while True:
                messages += await subscription.fetch(100, timeout=0.5)
        except TimeoutError:
            pass
        finally:
            await subscription.unsubscribe()
        return messages


@pytest.fixture
async def start_detector(nats_server, make_settings, sqlite_url):
    started: list[tuple[Runtime, nats.NATS]] = []

    async def start(**detector: object) -> Harness:
        settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url,
                                 detector=detector)
        runtime = Runtime(settings, ["detector"])
        await runtime.start()
        connection = await nats.connect(nats_server.url)
        started.append((runtime, connection))
        return Harness(runtime, connection)

    yield start
    for runtime, connection in started:
        await connection.close()
        await runtime.stop()


async def stop(harness: Harness) -> None:
    await harness.connection.close()
    await harness.runtime.stop()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_zero_traffic_window_is_no_data(start_detector):
    harness = await start_detector(window_seconds=1.0)
    await harness.send(batch(*[request() for _ in range(20)]))
    windows_url = f"{harness.runtime.base_url}/api/detector/windows"
    async with httpx.AsyncClient(headers=VIEWER) as client:
        assert (await client.get(windows_url)).json()[0]["outcomes"]["error_rate"] == "pass"
        for _ in range(100):
            windows = (await client.get(windows_url)).json()
            if windows[0]["outcomes"]["error_rate"] == "no_data":
                break
            await asyncio.sleep(0.1)
    assert windows[0]["requests"] == 0
    assert windows[0]["outcomes"]["error_rate"] == "no_data"
    assert await harness.breaches() == []


async def test_one_error_of_two_does_not_breach(start_detector):
    harness = await start_detector()
    await harness.send(batch(request(), request(status=500)))
    assert await harness.breaches() == []


async def test_three_errors_of_twenty_breach_once(start_detector):
    harness = await start_detector()
    await harness.send(batch(*[request() for _ in range(10)]))
    await harness.send(batch(*[request() for _ in range(7)]))
    await harness.send(batch(*[request(status=500) for _ in range(3)]))
    await harness.send(batch(request(status=503), request(status=500)))

    breaches = await harness.breaches()
    assert len(breaches) == 1
    breach = breaches[0]
    assert breach.trigger == "error_rate"
    assert breach.environment == "production"
    assert breach.service == "checkout"
    assert breach.version == "v2"
    assert breach.samples == 20
    assert breach.measured == pytest.approx(0.15)
    assert breach.threshold == pytest.approx(0.10)
    assert breach.window_seconds == 60.0


async def test_health_checks_breach_at_the_sixth(start_detector):
    harness = await start_detector()
    results = [False, False, True, False, False, False]
    for index, ok in enumerate(results[:4], start=1):
        await harness.send(batch(health(ok, check_id=f"c{index}")))
        await harness.send(batch(health(False), service="payments"),
                           subject="metrics.production.payments")
    await harness.send(batch(health(False, check_id="c4")))  # a redelivered result
    assert [b.service for b in await harness.breaches()] == ["payments"]

    await harness.send(batch(health(False, check_id="c5")))
    assert [b.service for b in await harness.breaches()] == ["payments"]
    await harness.send(batch(health(False, check_id="c6")))

    checkout = [b for b in await harness.breaches() if b.service == "checkout"]
    assert len(checkout) == 1
    assert checkout[0].trigger == "health_check"
    assert checkout[0].measured == 3
    assert checkout[0].threshold == 3


async def test_nan_among_valid_is_rejected_and_counted(start_detector):
    harness = await start_detector()
    before = counter("travi_detector_observations_rejected_total", reason="not_finite")
    accepted_before = counter("travi_detector_observations_accepted_total")
    body = json.dumps(batch(request(), request(latency=float("nan")), request())).encode()
    assert b"NaN" in body
    await harness.send(body)

    window = harness.runtime.services[0].consumer.detector.windows["production", "checkout", "v2"]
    assert window.requests.count == 2
    assert counter("travi_detector_observations_rejected_total", reason="not_finite") == before + 1
    assert counter("travi_detector_observations_accepted_total") == accepted_before + 2
    assert await harness.dead_letters() == []


async def test_message_without_valid_observation_is_dead_lettered(start_detector):
    harness = await start_detector()
    await harness.send(batch(request(latency=-5)))
    await harness.send(b"{broken")
    await harness.send(batch(request()), subject="metrics.production.payments")
    await harness.send(batch(*[request() for _ in range(3)]))

    letters = await harness.dead_letters()
    assert len(letters) == 3
    errors = [letter.headers[HEADER_ERROR] for letter in letters]
    assert "latency_ms" in errors[0]
    assert "invalid JSON" in errors[1]
    assert "metrics.production.checkout" in errors[2]
    assert harness.consumer.detector.windows["production", "checkout", "v2"].requests.count == 3


async def test_restart_rebuilds_windows_from_the_stream(start_detector):
    first = await start_detector()
    await first.send(batch(*[request() for _ in range(15)]))
    await stop(first)

    second = await start_detector()
    window = second.consumer.detector.windows["production", "checkout", "v2"]
    assert window.requests.count == 15
    await second.send(batch(*[request(status=500) for _ in range(5)]))
    assert window.requests.count == 20
    breaches = await second.breaches()
    assert [(b.trigger, b.samples) for b in breaches] == [("error_rate", 20)]


async def test_restart_republishes_a_breach_once(start_detector):
    first = await start_detector()
    await first.send(batch(*[request(status=500) for _ in range(20)]))
    assert len(await first.breaches()) == 1
    await stop(first)

    second = await start_detector()
    await asyncio.wait_for(second.consumer.publisher.drained(), 10)
    assert len(await second.breaches()) == 1


async def test_post_metrics_publishes_valid_observations(start_detector):
    harness = await start_detector()
    url = f"{harness.runtime.base_url}/api/metrics"
    document = batch(request(), request(latency=-1), request(status=500))
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json=document, headers=PRODUCER)
        unauthorised = await client.post(url, json=document)
        forbidden = await client.post(url, json=document, headers=VIEWER)
    assert response.status_code == 202
    assert response.json()["accepted"] == 2
    assert response.json()["rejected"][0]["field"] == "observations.1.latency_ms"
    assert unauthorised.status_code == 401
    assert forbidden.status_code == 403
    for _ in range(100):
        windows = harness.consumer.detector.windows
        if ("production", "checkout", "v2") in windows:
            break
        await asyncio.sleep(0.05)
    assert windows["production", "checkout", "v2"].requests.count == 2
    assert windows["production", "checkout", "v2"].requests.errors == 1


async def test_post_metrics_rejects_invalid_input(start_detector):
    harness = await start_detector()
    url = f"{harness.runtime.base_url}/api/metrics"
    async with httpx.AsyncClient(headers=PRODUCER) as client:
        malformed = await client.post(url, content=b"{nope")
        no_service = await client.post(url, json={**batch(request()), "service": ""})
        all_bad = await client.post(url, json=batch(request(latency=-1), {"kind": "x"}))
    assert malformed.status_code == 400
    assert no_service.status_code == 422
    assert no_service.json()["errors"][0]["field"] == "service"
    assert all_bad.status_code == 422
    assert [e["field"] for e in all_bad.json()["errors"]] == [
        "observations.0.latency_ms", "observations.1.kind"]


ALERTMANAGER = {
    "version": "4", "groupKey": "{}:{alertname=\"HighErrors\"}", "truncatedAlerts": 0,
    "status": "firing", "receiver": "travi", "groupLabels": {}, "commonLabels": {},
    "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
    "alerts": [
        {"status": "firing", "startsAt": "2026-12-04T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus", "fingerprint": "a1",
         "labels": {"alertname": "HighErrors", "environment": "production",
                    "service": "checkout", "version": "v2"},
         "annotations": {"summary": "5xx above 10%"}},
        {"status": "resolved", "startsAt": "2026-12-04T09:00:00Z", "endsAt": "2026-12-04T09:30:00Z",
         "fingerprint": "b2", "labels": {"alertname": "Old", "environment": "production",
                                         "service": "payments"}, "annotations": {}},
        {"status": "firing", "startsAt": "2026-12-04T10:00:00Z", "fingerprint": "c3",
         "labels": {"alertname": "NoService"}, "annotations": {}},
    ],
}
GRAFANA = {
    "receiver": "travi", "status": "firing", "orgId": 1, "title": "[FIRING:1]",
    "alerts": [
        {"status": "firing", "startsAt": "2026-12-04T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
         "fingerprint": "g1", "labels": {"alertname": "Latency", "env": "staging",
                                         "service": "search"},
         "annotations": {}, "values": {"B": 7300.5, "C": 1}, "silenceURL": "", "dashboardURL": ""},
    ],
}


async def test_alertmanager_firing_alert_becomes_a_breach(start_detector):
    harness = await start_detector()
    url = f"{harness.runtime.base_url}/api/alerts/alertmanager"
    async with httpx.AsyncClient(headers=PRODUCER) as client:
        response = await client.post(url, json=ALERTMANAGER)
        repeated = await client.post(url, json=ALERTMANAGER)
        resolved = await client.post(url, json={**ALERTMANAGER, "status": "resolved",
                                                "alerts": ALERTMANAGER["alerts"][1:2]})
        invalid = await client.post(url, json={**ALERTMANAGER, "version": "3"})
    assert response.status_code == 202
    assert response.json()["skipped"][0]["index"] == 2
    assert "environment" in response.json()["skipped"][0]["reason"]
    assert repeated.status_code == 202
    assert resolved.json() == {"breaches": [], "skipped": []}
    assert invalid.status_code == 422
    await asyncio.wait_for(harness.consumer.publisher.drained(), 10)

    breaches = await harness.breaches()
    assert len(breaches) == 1
    assert breaches[0].trigger == "alert"
    assert (breaches[0].environment, breaches[0].service, breaches[0].version) == (
        "production", "checkout", "v2")
    assert "HighErrors" in breaches[0].detail


async def test_grafana_alert_uses_configured_labels(start_detector):
    harness = await start_detector(environment_label="env")
    url = f"{harness.runtime.base_url}/api/alerts/grafana"
    async with httpx.AsyncClient(headers=PRODUCER) as client:
        response = await client.post(url, json=GRAFANA)
    assert response.status_code == 202
    await asyncio.wait_for(harness.consumer.publisher.drained(), 10)
    breaches = await harness.breaches()
    assert len(breaches) == 1
    assert (breaches[0].environment, breaches[0].service) == ("staging", "search")
    assert breaches[0].measured == 7300.5


async def test_reporter_over_nats_feeds_the_detector(start_detector, nats_server):
    harness = await start_detector()
    transport = await NatsTransport.connect(nats_server.url)
    sdk = MetricsReporter(transport, service="checkout", environment="production", version="v3",
                          flush_interval=0.05)
    async with sdk:
        for index in range(20):
            sdk.report_request(30.0, status=500 if index < 3 else 200)
    assert sdk.stats.published == 20
    last = (await harness.js.stream_info("TRAVI_METRICS")).state.last_seq
    await harness.applied(last)
    breaches = await harness.breaches()
    assert [(b.trigger, b.version, b.samples) for b in breaches] == [("error_rate", "v3", 20)]


async def test_reporter_over_http_feeds_the_detector(start_detector):
    harness = await start_detector()
    transport = HttpTransport(harness.runtime.base_url, "producer-token")
    sdk = MetricsReporter(transport, service="checkout", environment="production", version="v4")
    async with sdk:
        sdk.report_request(12.0, status=200)
        sdk.report_health_check("http", True)
    assert sdk.stats.published == 2
    assert sdk.stats.failed == 0
    last = (await harness.js.stream_info("TRAVI_METRICS")).state.last_seq
    await harness.applied(last)
    window = harness.consumer.detector.windows["production", "checkout", "v4"]
    assert window.requests.count == 1
    assert window.health.failures == {"http": 0}


async def test_consumer_with_explicit_acks_is_recreated(start_detector, nats_server):
    connection = await nats.connect(nats_server.url)
    js = connection.jetstream()
    await js.add_stream(name="TRAVI_METRICS", subjects=["metrics.>"])
    await js.add_consumer("TRAVI_METRICS", ConsumerConfig(durable_name="detector",
                                                          ack_policy=AckPolicy.EXPLICIT))
    await connection.close()

    harness = await start_detector()
    info = await harness.js.consumer_info("TRAVI_METRICS", "detector")
    assert info.config.ack_policy == AckPolicy.ALL
    await harness.send(batch(request()))
    assert harness.consumer.detector.windows["production", "checkout", "v2"].requests.count == 1


async def test_breach_continues_the_producer_trace(nats_server, make_settings, sqlite_url):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with Runtime(settings, ["detector"], tracer_provider=provider) as runtime:
        connection = await nats.connect(nats_server.url)
        harness = Harness(runtime, connection)
        ack = await harness.js.publish(
            "metrics.production.checkout",
            json.dumps(batch(*[request(status=500) for _ in range(20)])).encode(),
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        await harness.applied(ack.seq)
        letters = await harness._read(ROLLBACK_STREAM.name, "rollback.breach.>")
        await connection.close()
    assert len(letters) == 1
    assert letters[0].headers["traceparent"].split("-")[1] == trace_id
    spans = [s for s in exporter.get_finished_spans() if s.name == "detector breach"]
    assert format(spans[0].context.trace_id, "032x") == trace_id


async def test_duplicate_publish_counts_once(start_detector):
    harness = await start_detector()
    body = json.dumps(batch(*[request() for _ in range(5)])).encode()
    headers = {"Nats-Msg-Id": "batch-1"}
    first = await harness.js.publish("metrics.production.checkout", body, headers=headers)
    second = await harness.js.publish("metrics.production.checkout", body, headers=headers)
    assert second.duplicate
    await harness.applied(first.seq)
    assert harness.consumer.detector.windows["production", "checkout", "v2"].requests.count == 5
