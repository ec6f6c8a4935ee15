"""Hostile input to the detector's validation and HTTP routes, without a bus."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.detector import observations as obs
from services.detector.alerts import WebhookAlert, alert_breaches
from services.detector.api import build_router
from services.detector.observations import parse_message
from services.detector.triggers import Detector
from shared.auth import Authenticator
from shared.settings import DetectorSettings, Settings

NOW = 1_800_000_000.0
PRODUCER = {"Authorization": "Bearer producer-token"}


def parse(body: bytes):
    return parse_message(body, subject_environment="production", subject_service="checkout",
                         now=NOW, max_clock_skew=300.0)


@pytest.fixture
def client(tmp_path):
    settings = Settings(state_dir=tmp_path)
    auth = Authenticator({"producer-token": SecretStr("producer:qa")})
    # The rejected requests below return before the route touches the broker or the publisher.
    router = build_router(settings, auth, None, None, Detector(DetectorSettings()))
    app = FastAPI()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://detector")


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000])
def test_deeply_nested_json_is_invalid(body):
    parsed = parse(body)
    assert parsed.accepted == 0
    assert [r.reason for r in parsed.rejections] == [obs.INVALID_JSON]
    assert "nest" in parsed.rejections[0].message


async def test_post_metrics_deep_json_is_400(client):
    async with client:
        response = await client.post("/api/metrics", content=b"[" * 100_000, headers=PRODUCER)
    assert response.status_code == 400
    assert "invalid JSON" in response.json()["detail"]


class CountingBody:
    """A request body of ``chunks`` chunks of 1 MiB that counts how many were read."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self):
        for _ in range(self.chunks):
            self.read += 1
            yield b" " * (1 << 20)


@pytest.mark.parametrize("path", ["/api/metrics", "/api/alerts/alertmanager",
                                  "/api/alerts/grafana"])
async def test_huge_body_is_413_before_it_is_read(client, path):
    body = CountingBody(50)
    async with client:
        response = await client.post(path, content=body, headers=PRODUCER)
    assert response.status_code == 413
    assert "body is over 5000000 bytes" in response.json()["detail"]
    assert body.read <= 6


async def test_declared_huge_body_is_413(client):
    headers = {**PRODUCER, "Content-Length": str(10**10)}
    async with client:
        response = await client.post("/api/metrics", content=b"{}", headers=headers)
    assert response.status_code == 413


def request(at: float, failed: bool) -> tuple[float, float, bool, bool]:
    return (at, 50.0, failed, False)


def batch_of(requests) -> obs.ParsedMessage:
    return obs.ParsedMessage(environment="production", service="checkout", version="v2",
                             requests=list(requests))


def test_fast_producer_clock_does_not_blind_window():
    detector = Detector(DetectorSettings())
    # One producer's clock is 290 s ahead, inside the accepted clock skew.
    detector.apply(batch_of([request(NOW + 290, False)]), 1, NOW)
    decisions = detector.apply(
        batch_of(request(NOW, failed=index < 20) for index in range(40)), 2, NOW
    )
    window = detector.windows["production", "checkout", "v2"]
    assert window.requests.count == 41
    assert [d.trigger for d in decisions if d.fired] == ["error_rate"]


def test_future_request_still_expires():
    detector = Detector(DetectorSettings())
    detector.apply(batch_of([request(NOW + 290, True)]), 1, NOW)
    detector.apply(batch_of([request(NOW + 400, False)]), 2, NOW + 400)
    window = detector.windows["production", "checkout", "v2"]
    assert window.requests.count == 1
    assert window.requests.errors == 0


def test_alert_detail_has_no_nul():
    alert = WebhookAlert(
        status="firing",
        labels={"alertname": "High\u0000Errors", "service": "checkout",
                "environment": "production"},
        annotations={"summary": "5xx\u0000 above 10%"},
        startsAt="2026-12-04T10:00:00Z\u0000",
    )
    [breach], skipped = alert_breaches("grafana", [alert], DetectorSettings())
    assert skipped == []
    assert "\x00" not in breach.detail
    assert "5xx above 10%" in breach.detail
