"""The stats commands of ``travi`` against a running stats service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.runner import Runtime
from shared.bus import publish
from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    IncidentReportStored,
    PlanCreated,
    PlanFinished,
    StepChanged,
)
from shared.settings import Settings

pytestmark = pytest.mark.nats

CREATED_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
async def runtime(
    nats_server, make_settings: Callable[..., Settings], sqlite_url: str
) -> AsyncIterator[Runtime]:
    settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url)
    async with Runtime(settings, ["stats"]) as running:
        yield running


@pytest.fixture
def cli_env(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAVI_API_URL", runtime.base_url)
    monkeypatch.setenv("TRAVI_TOKEN", "operator-token")
    monkeypatch.setenv("TRAVI_STATE_DIR", str(tmp_path / "cli-state"))


async def invoke(*args: str):
    """Run a ``travi`` command in a thread, so the server in this event loop can respond."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def finished_plan(runtime: Runtime) -> PlanCreated:
    broker = runtime.context.broker
    plan = PlanCreated(
        plan_id=uuid4(), environment="production", service="checkout", from_version="v2",
        to_version="v1", trigger="latency", trigger_type="automatic", actor="system",
        created_at=CREATED_AT,
    )
    started = CREATED_AT + timedelta(seconds=1)
    await publish(broker, "rollback.plan.production.checkout", plan)
    await publish(
        broker,
        "rollback.step.production.checkout",
        StepChanged(plan_id=plan.plan_id, environment="production", service="checkout",
                    step="switch_version", status="succeeded", started_at=started, duration_ms=4200),
    )
    await publish(
        broker,
        "rollback.outcome.production.checkout",
        PlanFinished(plan_id=plan.plan_id, environment="production", service="checkout",
                     from_version="v2", to_version="v1", trigger="latency",
                     trigger_type="automatic", outcome="completed", started_at=started,
                     finished_at=started + timedelta(seconds=6), duration_ms=6000),
    )
    await publish(
        broker,
        "rollback.report.production.checkout",
        IncidentReportStored(plan_id=plan.plan_id, environment="production", service="checkout",
                             markdown="# Checkout rolled back"),
    )
    return plan


async def wait_for_output(expected: str, *args: str) -> str:
    for _ in range(200):
        result = await invoke(*args)
        if expected in result.output:
            return result.output
        await asyncio.sleep(0.05)
    raise AssertionError(f"'travi {' '.join(args)}' never printed {expected!r}: {result.output}")


async def test_stats_command_prints_counts(runtime, cli_env):
    await finished_plan(runtime)
    output = await wait_for_output("completed       1", "stats")
    assert "successRate     1" in output
    assert "avgDurationMs   6000" in output
    assert "latency  1" in output


async def test_rollback_list_show_and_report(runtime, cli_env):
    plan = await finished_plan(runtime)
    shown = await wait_for_output("reportAvailable  True", "rollback", "show", str(plan.plan_id))
    listed = await invoke("rollback", "list")
    report = await invoke("rollback", "report", str(plan.plan_id))
    assert str(plan.plan_id) in listed.output
    assert "completed" in listed.output
    assert "switch_version  succeeded  1        4200" in shown
    assert report.exit_code == 0
    assert "# Checkout rolled back" in report.output


async def test_rebuild_command_replays(runtime, cli_env):
    await finished_plan(runtime)
    await wait_for_output("completed       1", "stats")
    result = await invoke("stats", "rebuild")
    after = await invoke("stats")
    assert result.exit_code == 0, result.output
    assert "4 applied" in result.output
    assert "completed       1" in after.output


async def test_unknown_plan_exits_non_zero(runtime, cli_env):
    result = await invoke("rollback", "show", str(uuid4()))
    assert result.exit_code != 0
    assert "not found" in str(result.exception) + result.output


async def test_signals_command_lists_suppressions(runtime, cli_env):
    breach = BreachDetected(
        environment="production", service="checkout", version="v2", trigger="error_rate",
        measured=0.3, threshold=0.1, samples=40,
    )
    await publish(
        runtime.context.broker,
        "rollback.suppressed.production.checkout",
        BreachSuppressed(environment="production", service="checkout", reason="no_target",
                         detail="no earlier good version", breach=breach),
    )
    output = await wait_for_output("no_target", "stats", "signals", "--kind", "suppressed")
    empty = await invoke("stats", "signals", "--kind", "escalation")
    before = await invoke("stats", "signals", "--until", "2000-01-01T00:00:00Z")
    assert "no earlier good version" in output
    assert "production" in output
    assert "No signals match." in empty.output
    assert "No signals match." in before.output
