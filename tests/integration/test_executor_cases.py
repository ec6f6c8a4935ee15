"""The executor against a real nats-server and real commands: failures, cancels, slow drains,
trace context, invalid commands and the watch period.

The executor runs in the test's event loop here; test_executor_processes runs it in separate
processes (SIGKILL, two replicas).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.runner import Runtime
from shared.bus import DEAD_LETTER_STREAM, EXECUTE_SUBJECT, publish
from shared.contracts import BreachDetected
from tests.integration.executor_helpers.harness import (
    BusTap,
    Commander,
    bodies,
    plan_created,
    read_stream,
    record,
    wait_until,
)

pytestmark = pytest.mark.nats


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def command_config(tmp_path: Path, *, switch_exit: int = 0, drain_seconds: float = 0.2) -> dict:
    switch = record(tmp_path / "switches", "{service} {version}", "0", str(switch_exit))
    return {
        "driver": "command",
        "options": {"switch": switch},
        "traffic": "command",
        "traffic_options": {
            "pause": record(tmp_path / "traffic", "paused"),
            "resume": record(tmp_path / "traffic", "resumed"),
            "drain_seconds": drain_seconds,
        },
    }


def executor_settings(make_settings, nats_server, sqlite_url, services: dict, **executor: object):
    values: dict[str, object] = {
        "heartbeat_seconds": 0.2,
        "stale_after_seconds": 5,
        "services": services,
    }
    values.update(executor)
    return make_settings(nats_url=nats_server.url, database_url=sqlite_url, executor=values)


async def test_switch_failure_resumes_traffic(nats_server, make_settings, sqlite_url, tmp_path):
    services = {"checkout": command_config(tmp_path, switch_exit=3)}
    settings = executor_settings(make_settings, nats_server, sqlite_url, services)
    plan = plan_created()

    async with Runtime(settings, ["executor"]), BusTap(nats_server.url) as tap:
        async with Commander(nats_server.url) as commander:
            await commander.execute(plan)
        await tap.wait_for_outcomes(1)

    outcomes = bodies(await read_stream(nats_server.url, "rollback.outcome.>"))
    assert len(outcomes) == 1
    assert outcomes[0]["outcome"] == "failed"
    assert outcomes[0]["failed_step"] == "switch_version"
    assert "exited with code 3" in outcomes[0]["error"]
    assert lines(tmp_path / "traffic") == ["paused", "resumed"]
    assert lines(tmp_path / "switches") == ["checkout v1.1.0"]
    finished = {(b["step"], b["status"]) for b in tap.bodies("rollback.step.")}
    assert ("drain_connections", "succeeded") in finished
    assert ("switch_version", "failed") in finished
    assert ("verify_health", "skipped") in finished
    assert ("resume_traffic", "succeeded") in finished


async def test_cancel_during_drain(nats_server, make_settings, sqlite_url, tmp_path):
    services = {"checkout": command_config(tmp_path, drain_seconds=60)}
    settings = executor_settings(make_settings, nats_server, sqlite_url, services)
    plan = plan_created()

    async with Runtime(settings, ["executor"]), BusTap(nats_server.url) as tap:
        async with Commander(nats_server.url) as commander:
            await commander.execute(plan)

            async def draining() -> bool:
                return any(b["step"] == "drain_connections" for b in tap.bodies("rollback.step."))

            await wait_until(draining, 30, "drain started")
            await commander.cancel(plan, actor="bob", reason="operator asked")
        await tap.wait_for_outcomes(1)

    outcomes = bodies(await read_stream(nats_server.url, "rollback.outcome.>"))
    assert [o["outcome"] for o in outcomes] == ["cancelled"]
    assert outcomes[0]["actor"] == "bob"
    assert lines(tmp_path / "traffic") == ["paused", "resumed"]
    assert lines(tmp_path / "switches") == []


async def test_drain_longer_than_ack_wait_runs_once(
    nats_server, make_settings, sqlite_url, tmp_path
):
    services = {"checkout": command_config(tmp_path, drain_seconds=2.5)}
    settings = executor_settings(
        make_settings, nats_server, sqlite_url, services, ack_wait_seconds=1
    )
    plan = plan_created()

    async with Runtime(settings, ["executor"]) as runtime, BusTap(nats_server.url) as tap:
        async with Commander(nats_server.url) as commander:
            await commander.execute(plan)
        await tap.wait_for_outcomes(1)
        await asyncio.sleep(1.5)
        js = runtime.context.broker.connection.jetstream()
        consumer = await js.consumer_info("TRAVI_ROLLBACK", "executor-commands")

    assert consumer.num_redelivered == 0
    assert consumer.num_ack_pending == 0
    outcomes = bodies(await read_stream(nats_server.url, "rollback.outcome.>"))
    assert [o["outcome"] for o in outcomes] == ["completed"]
    assert lines(tmp_path / "switches") == ["checkout v1.1.0"]
    assert lines(tmp_path / "traffic") == ["paused", "resumed"]


async def test_trace_id_runs_into_outcome(nats_server, make_settings, sqlite_url):
    settings = executor_settings(make_settings, nats_server, sqlite_url, {})
    provider = TracerProvider()
    plan = plan_created()

    async with Runtime(settings, ["executor"]), BusTap(nats_server.url) as tap:
        async with Commander(nats_server.url, tracer_provider=provider) as commander:
            with provider.get_tracer("test").start_as_current_span("breach") as origin:
                await commander.execute(plan)
        await tap.wait_for_outcomes(1)

    trace_id = format(origin.get_span_context().trace_id, "032x")
    published = [
        m
        for m in await read_stream(nats_server.url, "rollback.>")
        if m.subject.startswith(("rollback.step.", "rollback.outcome."))
    ]
    assert len(published) == 17
    for message in published:
        assert trace_id in message.headers.get("traceparent", ""), message.subject
    assert [b["outcome"] for b in bodies(published) if "outcome" in b] == ["completed"]


async def test_invalid_command_goes_to_dead_letter(nats_server, make_settings, sqlite_url):
    settings = executor_settings(make_settings, nats_server, sqlite_url, {})
    plan = plan_created()

    async with Runtime(settings, ["executor"]), BusTap(nats_server.url) as tap:
        connection = await nats.connect(nats_server.url)
        bad = {"plan": {**json.loads(plan.model_dump_json()), "service": "../etc"}, "actor": "eve"}
        await connection.jetstream().publish(EXECUTE_SUBJECT, json.dumps(bad).encode())
        await connection.close()
        async with Commander(nats_server.url) as commander:
            await commander.execute(plan)
        await tap.wait_for_outcomes(1)

    connection = await nats.connect(nats_server.url)
    subscription = await connection.jetstream().pull_subscribe(
        "deadletter.executor-commands", stream=DEAD_LETTER_STREAM.name
    )
    letters = await subscription.fetch(10, timeout=2)
    await connection.close()
    assert len(letters) == 1
    assert "plan.service" in letters[0].headers["Travi-Error"]


async def test_watch_period_escalates_breach(nats_server, make_settings, sqlite_url):
    settings = executor_settings(make_settings, nats_server, sqlite_url, {}, watch_seconds=30)
    plan = plan_created()

    async with Runtime(settings, ["executor"]) as runtime, BusTap(nats_server.url) as tap:
        async with Commander(nats_server.url) as commander:
            await commander.execute(plan)
            await tap.wait_for_outcomes(1)
            for version in ("v9.9.9", "v1.1.0"):
                breach = BreachDetected(
                    environment="production",
                    service="checkout",
                    version=version,
                    trigger="error_rate",
                    measured=0.3,
                    threshold=0.1,
                )
                await publish(commander.broker, "rollback.breach.production.checkout", breach)

        async def escalated() -> bool:
            return bool(tap.bodies("rollback.escalation."))

        await wait_until(escalated, 15, "escalation")
        assert runtime is not None

    escalations = tap.bodies("rollback.escalation.")
    assert len(escalations) == 1
    assert escalations[0]["reason"] == "watch_breach"
    assert escalations[0]["plan_id"] == str(plan.plan_id)
