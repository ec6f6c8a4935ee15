"""The dashboard in real headless Chromium, against a running stats service.

Uses Debian's ``/usr/bin/chromium`` through Playwright. Without it the tests are skipped on a
laptop and fail under CI.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from services.runner import Runtime
from services.planner.subscribers import DEPLOYMENT_CONSUMER
from shared.bus import DEPLOYMENTS_STREAM, publish
from shared.contracts import (
    STEP_NAMES,
    BreachDetected,
    BreachSuppressed,
    ExecutePlan,
    IncidentReportStored,
    PlanCreated,
    PlanFinished,
    StepChanged,
)
from shared.settings import Settings
from tests.conftest import OPERATOR, missing

pytestmark = [pytest.mark.browser, pytest.mark.nats]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BAR_COLOR = (0x2F, 0x6F, 0xDF)
CREATED_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Decode an 8-bit RGB or RGBA PNG, as Chromium writes screenshots, to RGB pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed = 8, b""
    width = height = channels = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8, f"unsupported PNG bit depth {depth}"
            assert color in (2, 6), f"unsupported PNG color type {color}"
            assert interlace == 0, "unsupported interlaced PNG"
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            compressed += body
    raw = zlib.decompress(compressed)
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - up_left
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
                predictor = (left, up, up_left)[distances.index(min(distances))]
                line[i] = (line[i] + predictor) & 0xFF
        pixels.extend(tuple(line[i : i + 3]) for i in range(0, stride, channels))
        previous = line
    return width, height, pixels


# A detail part without spaces, such as a URL in an alert, as long as a breach detail allows.
LONG_WORD = "https://grafana.example/d/" + "x" * 1900


async def publish_rollbacks(runtime: Runtime) -> tuple[PlanCreated, PlanCreated]:
    """Publish one automatic and one manual rollback, both completed, the first with a report."""
    broker = runtime.context.broker
    breach = BreachDetected(environment="production", service="checkout", trigger="error_rate",
                            measured=0.3, threshold=0.1, detected_at=CREATED_AT)
    automatic = PlanCreated(
        plan_id=uuid4(), environment="production", service="checkout", from_version="v2",
        to_version="v1", trigger="error_rate", trigger_type="automatic", actor="system",
        created_at=CREATED_AT, breach=breach,
    )
    manual = PlanCreated(
        plan_id=uuid4(), environment="production", service="search", from_version="v5",
        to_version="v4", trigger="manual", trigger_type="manual", actor="alice",
        created_at=CREATED_AT + timedelta(minutes=5),
    )
    for plan, seconds in ((automatic, 9.0), (manual, 4.0)):
        subject = f"{plan.environment}.{plan.service}"
        await publish(broker, f"rollback.plan.{subject}", plan)
        await publish(broker, "rollback.execute", ExecutePlan(plan=plan, actor=plan.actor))
        at = plan.created_at
        for name in STEP_NAMES:
            duration = 5000.0 if name == "switch_version" else 300.0
            await publish(broker, f"rollback.step.{subject}", StepChanged(
                plan_id=plan.plan_id, environment=plan.environment, service=plan.service,
                step=name, status="succeeded", started_at=at, duration_ms=duration))
            at += timedelta(milliseconds=duration)
        await publish(broker, f"rollback.outcome.{subject}", PlanFinished(
            plan_id=plan.plan_id, environment=plan.environment, service=plan.service,
            from_version=plan.from_version, to_version=plan.to_version, trigger=plan.trigger,
            trigger_type=plan.trigger_type, outcome="completed", started_at=plan.created_at,
            finished_at=plan.created_at + timedelta(seconds=seconds), duration_ms=seconds * 1000))
    await publish(broker, "rollback.report.production.checkout", IncidentReportStored(
        plan_id=automatic.plan_id, environment="production", service="checkout",
        markdown="# Incident: checkout rolled back to v1"))
    await publish(broker, "rollback.suppressed.production.checkout", BreachSuppressed(
        environment="production", service="checkout", reason="in_progress",
        detail="<b>plan already running</b> " + LONG_WORD, breach=breach, plan_id=automatic.plan_id))
    return automatic, manual


@pytest.fixture
async def runtime(
    nats_server, make_settings: Callable[..., Settings], sqlite_url: str
) -> AsyncIterator[Runtime]:
    settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url)
    async with Runtime(settings, ["stats"]) as running:
        yield running


@pytest.fixture
async def browser():
    if not CHROMIUM.exists():
        missing(f"no Chromium at {CHROMIUM}: install Debian's chromium package")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


async def test_dashboard_shows_rollbacks_and_chart(runtime, browser):
    automatic, manual = await publish_rollbacks(runtime)
    page = await browser.new_page(viewport={"width": 1200, "height": 1400})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    response = await page.goto(runtime.base_url + "/")
    assert response.status == 401
    await page.fill("#token", "viewer-token")
    await page.click("button[type=submit]")
    await page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    # The consumer may still be applying events: reload until both plans and the suppression
    # are shown.
    for _ in range(100):
        total = await page.text_content("#totals div[data-metric=Total] dd")
        rows = await page.locator("#timeline li[data-plan-id]").count()
        signals = await page.locator("#signals tr.signal-suppressed").count()
        if total == "2" and rows == 2 and signals == 1:
            break
        await page.wait_for_timeout(200)
        await page.reload()
        await page.wait_for_selector("body[data-loaded=true]")

    assert await page.text_content("#totals div[data-metric=Total] dd") == "2"
    assert await page.text_content("#totals div[data-metric=Automatic] dd") == "1"
    assert await page.text_content("#totals div[data-metric=Manual] dd") == "1"
    assert await page.text_content("#totals div[data-metric='Success rate'] dd") == "100.0 %"
    assert await page.locator("#trigger-chart rect").count() == 2
    assert await page.locator("#timeline li[data-plan-id] .bar span").count() == 16
    assert await page.locator(f"a[href='/api/admin/rollbacks/{automatic.plan_id}/incident-report']").count() == 1
    assert await page.locator(f"a[href='/api/admin/rollbacks/{manual.plan_id}']").count() == 1

    png = await page.locator("#trigger-chart svg").screenshot()
    width, height, pixels = decode_png(png)
    background = sum(1 for pixel in pixels if min(pixel) > 245)
    bar = sum(1 for pixel in pixels if all(abs(a - b) <= 12 for a, b in zip(pixel, BAR_COLOR)))
    assert width > 300
    assert height > 40
    assert bar > 2000, f"only {bar} bar-coloured pixels in the chart"
    assert background < len(pixels), "the chart is blank"

    suppressed = page.locator("#signals tr.signal-suppressed")
    assert await suppressed.count() == 1
    assert "in_progress" in await suppressed.text_content()
    # The detail is shown as text, never as markup.
    assert "<b>plan already running</b>" in await suppressed.text_content()
    assert await page.locator("#signals b").count() == 0
    # A long detail without spaces wraps inside its cell instead of widening the page.
    page_width, viewport_width = await page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert page_width <= viewport_width

    await page.click(f"#timeline li[data-plan-id='{automatic.plan_id}'] a[href^='#plan=']")
    await page.wait_for_selector("#detail:not([hidden])")
    assert "checkout rolled back" in await page.text_content("#detail-report")
    assert await page.locator("#detail-steps tbody tr").count() == len(STEP_NAMES)
    assert all(url.startswith(runtime.base_url) for url in requests), requests


async def test_token_in_address_sets_cookie(runtime, browser):
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{runtime.base_url}/?token=viewer-token")
    await page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    cookies = await context.cookies()
    assert page.url == runtime.base_url + "/"
    assert [cookie["name"] for cookie in cookies] == ["travi_token"]
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Strict"
    assert await page.text_content("#trigger-chart") == "No rollbacks yet."

    response = await page.goto(f"{runtime.base_url}/?token=wrong")
    assert response.status == 401
    assert "invalid" in await page.text_content(".error")
    await context.close()


async def wait_consumed(runtime: Runtime, stream: str, consumer: str, timeout: float = 30.0) -> None:
    """Wait until ``consumer`` has acknowledged every message of ``stream``."""
    js = runtime.context.broker.connection.jetstream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        info = await js.consumer_info(stream, consumer)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"consumer {consumer} left messages of {stream} unacknowledged")


async def wait_for_stats(http, condition, timeout: float = 60.0) -> dict:
    """Poll the stats endpoint until ``condition`` holds for its body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    body: dict = {}
    while loop.time() < deadline:
        body = (await http.get("/api/admin/rollback/stats")).json()
        if condition(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"the stats never matched within {timeout} s: {body}")


@pytest.mark.slow
async def test_system_automatic_and_manual_rollback(system, browser):
    """One automatic rollback (from metric events) and one manual one, through all services."""
    async with httpx.AsyncClient(base_url=system.base_url, headers=OPERATOR, timeout=30) as http:
        for service, versions in (("checkout", ("v1.0.0", "v1.1.0")), ("search", ("v5", "v6"))):
            for version in versions:
                response = await http.post("/api/admin/deployments", json={
                    "service": service, "environment": "production", "version": version})
                assert response.status_code == 202, response.text
        # The planner learns the known-good versions from the deployment events: wait until its
        # consumer has acknowledged all four before a breach needs them.
        await wait_consumed(system, DEPLOYMENTS_STREAM.name, DEPLOYMENT_CONSUMER)

        now = datetime.now(UTC)
        observations = [
            {"kind": "request", "at": (now + timedelta(milliseconds=10 * i)).isoformat(),
             "latency_ms": 40.0, "status": 500}
            for i in range(60)
        ]
        metrics = await http.post("/api/metrics", json={
            "service": "checkout", "environment": "production", "version": "v1.1.0",
            "observations": observations})
        assert metrics.status_code == 202, metrics.text

        created = await http.post("/api/admin/rollbacks", json={
            "service": "search", "environment": "production", "targetVersion": "v5",
            "reason": "by hand"})
        assert created.status_code == 201, created.text
        executed = await http.post(f"/api/admin/rollbacks/{created.json()['id']}/execute")
        assert executed.status_code == 202, executed.text

        stats = await wait_for_stats(
            http, lambda body: body["total"] == 2 and body["completed"] + body["failed"] == 2
        )
    assert stats["automaticCount"] == 1
    assert stats["manualCount"] == 1
    assert stats["triggerBreakdown"] == {"error_rate": 1, "manual": 1}

    page = await browser.new_page()
    await page.goto(f"{system.base_url}/?token=viewer-token")
    await page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    services = await page.locator("#timeline li[data-plan-id] a[href^='#plan=']").all_text_contents()
    assert sorted(services) == ["checkout / production", "search / production"]
    assert await page.locator("#trigger-chart rect").count() == 2

