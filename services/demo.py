"""``travi demo``: a real service goes bad and TRAVI rolls it back, on screen.

The demo starts its own embedded system in ``<state>/demo`` (wiped at each run): a nats-server,
SQLite, all five services and a local Slack-compatible endpoint. It deploys the example app
(``examples/demo_app``) with the releases layout, v1.1.0 first and then v1.2.0, which fails about
a quarter of its requests, and drives real HTTP traffic at it. The detector measures the error rate,
the planner plans, the executor switches ``current`` back and restarts the app, the notifier
posts to the local Slack endpoint, and the stats count it. Progress is printed as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import typer
from opentelemetry.sdk.trace import TracerProvider

from examples.demo_app.releases import create_releases, point_current
from services.runner import Runtime
from shared.embedded import EmbeddedNats, free_port
from shared.fake_slack import FakeSlack, Received
from shared.settings import Settings

ENVIRONMENT = "production"
SERVICE = "checkout"
GOOD, BAD = "v1.1.0", "v1.2.0"
# Seconds of healthy v1.1.0 traffic before the bad version is deployed.
WARM_UP_SECONDS = 2.0


@dataclass
class DemoResult:
    """Observations of one demo run."""

    outcome: str | None = None
    plan_id: str | None = None
    time_to_recovery_s: float | None = None
    breach_to_executing_ms: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None
    slack_messages: list[str] = field(default_factory=list)
    final_version: str | None = None
    api_url: str = ""
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)


class Progress:
    """Prints timestamped lines relative to the demo's start."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.started = time.monotonic()
        self.write = write

    def __call__(self, line: str) -> None:
        self.write(f"  +{time.monotonic() - self.started:6.2f}s  {line}")


def describe_event(subject: str, body: dict[str, Any]) -> str | None:
    """Return a progress line for a rollback event, or None for events not shown."""
    kind = ".".join(subject.split(".")[:2])
    if kind == "rollback.breach":
        return (f"breach: {body['trigger']} {body['measured']:.3g} over threshold "
                f"{body['threshold']:.3g} on {body['samples']} requests of {body.get('version')}")
    if kind == "rollback.plan":
        return (f"plan {body['plan_id'][:8]}: {body['service']} {body['from_version']} -> "
                f"{body['to_version']} ({body['trigger_type']}, {body['trigger']})")
    if kind == "rollback.step":
        if body["status"] == "running":
            return f"  step {body['step']:<17} started (attempt {body['attempt']})"
        duration = body.get("duration_ms")
        took = f" in {duration:.0f} ms" if duration is not None else ""
        error = f": {body['error']}" if body.get("error") else ""
        return f"  step {body['step']:<17} {body['status']}{took}{error}"
    if kind == "rollback.outcome":
        duration = body.get("duration_ms") or 0.0
        return f"outcome: {body['outcome']} in {duration / 1000:.2f} s"
    if kind == "rollback.suppressed":
        return f"breach suppressed: {body['reason']} {body.get('detail', '')}"
    if kind == "rollback.report":
        return "incident report stored"
    return None


class Traffic:
    """Sends bounded HTTP traffic at the app and notes which version served it."""

    def __init__(self, url: str, rate: float) -> None:
        self.url = url
        self.interval = 1.0 / rate
        self.first_bad_at: float | None = None
        self.responses: dict[str, int] = {}
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                tick = time.monotonic()
                try:
                    response = await client.get(self.url)
                    version = response.json().get("version", "?")
                    self.responses[version] = self.responses.get(version, 0) + 1
                    if version == BAD and self.first_bad_at is None:
                        self.first_bad_at = tick
                    if response.status_code >= 500:
                        self.errors += 1
                except (httpx.HTTPError, ValueError):
                    self.errors += 1
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - tick)))

    def start(self) -> None:
        """Start sending."""
        self._task = asyncio.create_task(self._run(), name="demo-traffic")

    async def stop(self) -> None:
        """Stop sending."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_for_version(url: str, version: str, timeout: float) -> float:
    """Poll ``url`` until it reports ``version`` as healthy; return the monotonic time."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await client.get(url)
                if response.status_code == 200 and response.json().get("version") == version:
                    return time.monotonic()
            await asyncio.sleep(0.05)
    raise TimeoutError(f"the demo app did not report {version} healthy at {url} within {timeout} s")


def demo_settings(base: Settings, demo_dir: Path, nats_url: str, slack_url: str,
                  app_root: Path, app_port: int, supervisor_pid: int, token: str) -> Settings:
    """Return the settings of the demo's embedded system."""
    driver = {
        "driver": "releases",
        "options": {
            "root": str(app_root),
            "restart": ["kill", "-HUP", str(supervisor_pid)],
            "health_url": f"http://127.0.0.1:{app_port}/health",
            "health_expect": "{version}",
        },
    }
    values = base.model_dump(exclude={"tokens", "database_url", "nats_url"})
    values["executor"]["services"][f"{ENVIRONMENT}/{SERVICE}"] = driver
    values["notifier"]["slack_webhook_url"] = slack_url
    values.update(
        state_dir=str(demo_dir),
        nats_url=nats_url,
        database_url=base.database_url.get_secret_value() if base.database_url else None,
        http_port=0,
        tokens={token: "operator:demo"},
    )
    return Settings.model_validate(values)


async def watch_events(nats_url: str, result: DemoResult, progress: Progress,
                       finished: asyncio.Event, reported: asyncio.Event) -> nats.NATS:
    """Print rollback events as they are published, and note the outcome and the report."""
    connection = await nats.connect(nats_url)

    async def on_message(message: Any) -> None:
        try:
            body = json.loads(message.data)
        except ValueError:
            return
        result.events.append((time.monotonic(), message.subject, body))
        line = describe_event(message.subject, body)
        if line:
            progress(line)
        if message.subject.startswith("rollback.outcome."):
            result.outcome = body["outcome"]
            result.plan_id = body["plan_id"]
            finished.set()
        if message.subject.startswith("rollback.report."):
            reported.set()

    await connection.subscribe("rollback.>", cb=on_message)
    return connection


def start_app(app_root: Path, port: int, nats_url: str, pid_file: Path) -> subprocess.Popen[bytes]:
    """Start the example app's supervisor, which runs the release ``current`` points at."""
    argv = [sys.executable, "-m", "examples.demo_app.supervisor", "--root", str(app_root),
            "--port", str(port), "--service", SERVICE, "--environment", ENVIRONMENT,
            "--nats-url", nats_url, "--pid-file", str(pid_file)]
    return subprocess.Popen(argv)


def _breach_to_executing_ms(result: DemoResult) -> float | None:
    breach_at = next((at for at, subject, _ in result.events if subject.startswith("rollback.breach.")), None)
    executing_at = next((at for at, subject, body in result.events
                         if subject.startswith("rollback.step.") and body.get("status") == "running"), None)
    if breach_at is None or executing_at is None:
        return None
    return (executing_at - breach_at) * 1000


async def run_demo(
    base: Settings,
    *,
    write: Callable[[str], None] = print,
    rate: float = 40.0,
    timeout: float = 60.0,
    tracer_provider: TracerProvider | None = None,
) -> DemoResult:
    """Run the whole story once and return what it observed."""
    demo_dir = (base.state_dir / "demo").resolve()
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    progress = Progress(write)
    result = DemoResult()
    token = secrets.token_urlsafe(24)
    headers = {"Authorization": f"Bearer {token}"}

    nats_server = EmbeddedNats(demo_dir / "nats")
    await asyncio.to_thread(nats_server.start)
    slack = FakeSlack().start()
    slack.on_request(lambda received: _print_slack(received, result, progress))
    app_root, app_port = demo_dir / "checkout", free_port()
    create_releases(app_root)
    point_current(app_root, GOOD)
    supervisor = start_app(app_root, app_port, nats_server.url, demo_dir / "supervisor.pid")
    app_url = f"http://127.0.0.1:{app_port}"
    runtime: Runtime | None = None
    traffic = Traffic(app_url + "/", rate)
    watcher: nats.NATS | None = None
    try:
        await wait_for_version(app_url + "/health", GOOD, 30)
        settings = demo_settings(base, demo_dir, nats_server.url, slack.url + "/services/T0DEMO/B0DEMO/demo",
                                 app_root, app_port, supervisor.pid, token)
        runtime = Runtime(settings, tracer_provider=tracer_provider, freeze_heap=True)
        await runtime.start()
        result.api_url = runtime.base_url
        finished, reported = asyncio.Event(), asyncio.Event()
        watcher = await watch_events(nats_server.url, result, progress, finished, reported)
        progress(f"TRAVI is up at {runtime.base_url}; demo app {SERVICE} at {app_url}")

        async with httpx.AsyncClient(base_url=runtime.base_url, headers=headers, timeout=10) as api:
            await _record(api, GOOD)
            progress(f"deployed {GOOD} and recorded it; sending {rate:.0f} requests/s")
            traffic.start()
            await asyncio.sleep(WARM_UP_SECONDS)

            point_current(app_root, BAD)
            supervisor.send_signal(1)  # SIGHUP: the supervisor restarts the app from current
            await wait_for_version(app_url + "/health", BAD, 30)
            await _record(api, BAD)
            progress(f"deployed {BAD} and recorded it; it fails about a quarter of its requests")

            await asyncio.wait_for(finished.wait(), timeout)
            restored_at = await wait_for_version(app_url + "/health", GOOD, 30)
            if traffic.first_bad_at is not None:
                result.time_to_recovery_s = restored_at - traffic.first_bad_at
            await traffic.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reported.wait(), 15)
            result.stats = await _stats(api)
        result.final_version = GOOD
        result.breach_to_executing_ms = _breach_to_executing_ms(result)
        reports_dir = settings.notifier.reports_dir or settings.state_dir / "reports"
        if result.plan_id and (reports_dir / f"{result.plan_id}.md").exists():
            result.report_path = reports_dir / f"{result.plan_id}.md"
        await asyncio.sleep(1.5)  # let the last Slack message through the 1 message/s limit
    finally:
        await traffic.stop()
        if watcher is not None:
            await watcher.close()
        if runtime is not None:
            await runtime.stop()
        supervisor.terminate()
        await asyncio.to_thread(supervisor.wait, 15)
        slack.stop()
        await asyncio.to_thread(nats_server.stop)
    return result


async def _record(api: httpx.AsyncClient, version: str) -> None:
    body = {"environment": ENVIRONMENT, "service": SERVICE, "version": version,
            "status": "succeeded", "actor": "demo"}
    response = await api.post("/api/admin/deployments", json=body)
    response.raise_for_status()


async def _stats(api: httpx.AsyncClient) -> dict[str, Any]:
    # The stats consumer may still be applying the outcome; wait until it has.
    for _ in range(100):
        response = await api.get("/api/admin/rollback/stats")
        response.raise_for_status()
        stats = response.json()
        if stats["inProgress"] == 0 and stats["pending"] == 0 and stats["total"] > 0:
            return stats
        await asyncio.sleep(0.1)
    return stats


def _print_slack(received: Received, result: DemoResult, progress: Progress) -> None:
    try:
        text = received.json().get("text", "")
    except ValueError:
        return
    result.slack_messages.append(text)
    progress(f"slack #incidents: {text.splitlines()[0] if text else '(blocks only)'}")


def print_summary(result: DemoResult, write: Callable[[str], None] = print) -> None:
    """Print the demo's conclusion: time to recovery, stats and the incident report."""
    write("")
    if result.outcome is None:
        write("The rollback did not finish in time.")
        return
    if result.time_to_recovery_s is not None:
        write(f"Time to recovery (first bad request to {GOOD} healthy): {result.time_to_recovery_s:.2f} s")
    if result.breach_to_executing_ms is not None:
        write(f"Breach to executing: {result.breach_to_executing_ms:.0f} ms")
    write(f"Outcome: {result.outcome} (plan {result.plan_id})")
    write("Stats: " + json.dumps(result.stats))
    if result.report_path is not None:
        write(f"Incident report: {result.report_path}")
    else:
        write("Incident report: not written yet")


def register(app: typer.Typer, _groups: dict[str, typer.Typer]) -> None:
    """Add ``travi demo`` to the command line."""

    @app.command()
    def demo(
        rate: float = typer.Option(40.0, min=1, max=500, help="Requests per second sent to the app."),
        timeout: float = typer.Option(60.0, min=5, help="Seconds to wait for the rollback."),
    ) -> None:
        """Deploy a good and a bad version of a real app and watch TRAVI roll it back."""
        from services.cli import load_settings
        from shared.logs import setup_logging

        settings = load_settings()
        setup_logging("WARNING", "text")
        print("TRAVI demo: checkout v1.1.0 is healthy, v1.2.0 answers 500 on about 25% of requests.")
        result = asyncio.run(run_demo(settings, rate=rate, timeout=timeout))
        print_summary(result)
        if result.outcome != "completed":
            raise typer.Exit(1)
