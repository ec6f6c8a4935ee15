"""The producer SDK: batching, the bounded buffer, failures, and the ASGI middleware."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.asgi_metrics import MetricsMiddleware
from shared.contracts import MetricsReported
from shared.errors import InvalidName
from shared.reporter import MetricsReporter


class RecordingTransport:
    def __init__(self, *, fail: bool = False, block: asyncio.Event | None = None) -> None:
        self.batches: list[tuple[str, dict, str]] = []
        self.fail = fail
        self.block = block
        self.closed = False

    async def send(self, subject: str, body: bytes, event_id: str) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.fail:
            raise ConnectionError("NATS is down")
        self.batches.append((subject, json.loads(body), event_id))

    async def close(self) -> None:
        self.closed = True


def reporter(transport, **options) -> MetricsReporter:
    return MetricsReporter(transport, service="checkout", environment="production",
                           version="v1.2.0", **options)


async def test_batches_are_valid_metrics_messages():
    transport = RecordingTransport()
    async with reporter(transport, max_batch=2, flush_interval=0.05) as sdk:
        sdk.report_request(120.5, status=200)
        sdk.report_request(31_000, timed_out=True)
        sdk.report_health_check("http", False, check_id="c1")
        sdk.report_budget(120.0, 100.0)
    assert transport.closed
    assert [len(body["observations"]) for _, body, _ in transport.batches] == [2, 2]
    for subject, body, event_id in transport.batches:
        assert subject == "metrics.production.checkout"
        assert str(MetricsReported.model_validate(body).event_id) == event_id
    kinds = [o["kind"] for _, body, _ in transport.batches for o in body["observations"]]
    assert kinds == ["request", "request", "health_check", "budget"]
    assert transport.batches[0][1]["observations"][1]["timed_out"] is True


async def test_full_buffer_drops_and_counts():
    blocked = asyncio.Event()
    transport = RecordingTransport(block=blocked)
    sdk = reporter(transport, max_batch=10, max_buffer=10)
    results = [sdk.report_request(1.0, status=200) for _ in range(25)]
    assert results.count(True) == 10
    assert sdk.stats.dropped == 15
    assert sdk.pending == 10
    blocked.set()
    await sdk.stop()
    assert sdk.stats.published == 10


async def test_report_does_not_wait_for_a_stuck_transport():
    blocked = asyncio.Event()
    transport = RecordingTransport(block=blocked)
    sdk = reporter(transport, max_batch=5, max_buffer=20, flush_interval=0.01)
    await sdk.start()
    for _ in range(100):
        sdk.report_request(1.0)
        await asyncio.sleep(0)
    assert sdk.stats.reported + sdk.stats.dropped == 100
    assert sdk.stats.dropped > 0
    blocked.set()
    await sdk.stop()


async def test_failed_send_is_counted_not_raised():
    transport = RecordingTransport(fail=True)
    sdk = reporter(transport, max_batch=3)
    for _ in range(7):
        sdk.report_request(5.0, status=503)
    await sdk.stop()
    assert sdk.stats.failed == 7
    assert sdk.stats.published == 0


def test_invalid_values_are_counted_not_buffered():
    sdk = reporter(RecordingTransport())
    assert not sdk.report_request(float("nan"))
    assert not sdk.report_request(-1.0)
    assert not sdk.report_budget(1.0, 0.0)
    assert sdk.stats.invalid == 3
    assert sdk.pending == 0


def test_invalid_names_are_rejected_at_construction():
    with pytest.raises(InvalidName, match="service"):
        MetricsReporter(RecordingTransport(), service="Check Out", environment="production",
                        version="v1")
    with pytest.raises(ValueError, match="max_buffer"):
        reporter(RecordingTransport(), max_batch=100, max_buffer=10)


async def fine(_request):
    return PlainTextResponse("ok")


async def broken(_request):
    raise RuntimeError("bug")


async def unavailable(_request):
    return PlainTextResponse("down", status_code=503)


async def test_middleware_reports_each_request():
    sdk = reporter(RecordingTransport())
    app = Starlette(routes=[Route("/fine", fine), Route("/broken", broken),
                            Route("/down", unavailable), Route("/api/health", fine)])
    app.add_middleware(MetricsMiddleware, reporter=sdk)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        assert (await client.get("/fine")).status_code == 200
        assert (await client.get("/broken")).status_code == 500
        assert (await client.get("/down")).status_code == 503
        assert (await client.get("/missing")).status_code == 404
        assert (await client.get("/api/health")).status_code == 200
    await sdk.flush()
    observations = sdk._transport.batches[0][1]["observations"]
    assert [o["status"] for o in observations] == [200, 500, 503, 404]
    assert all(o["latency_ms"] >= 0 for o in observations)
