"""The executor in separate ``travi run executor`` processes: killed mid-plan, and two replicas
sharing 200 plans."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider

from shared.db import sync_url
from tests.integration.executor_helpers.deployer import FakeDeployer
from tests.integration.executor_helpers.harness import (
    HELPERS,
    BusTap,
    Commander,
    ExecutorProcess,
    bodies,
    executor_env,
    plan_created,
    read_stream,
    record,
    wait_until,
)

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def step_status(database: Path, plan_id: str, step: str) -> str | None:
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT status FROM executor_steps WHERE plan_id = ? AND name = ?", (plan_id, step)
        ).fetchone()
    return row[0] if row else None


def recorded_checkout(tmp_path: Path, in_flight: Path) -> dict:
    """Return a command driver for checkout that records switches and traffic in files.

    The drain waits while the file ``in_flight`` contains a number above zero. It starts at 3.
    """
    in_flight.write_text("3")
    return {
        "checkout": {
            "driver": "command",
            "options": {"switch": record(tmp_path / "switches", "{service} {version}")},
            "traffic": "command",
            "traffic_options": {
                "pause": record(tmp_path / "traffic", "paused"),
                "resume": record(tmp_path / "traffic", "resumed"),
                "in_flight": [sys.executable, "-S", str(HELPERS / "in_flight.py"), str(in_flight)],
            },
        }
    }


async def test_sigkill_after_pause_resumes(nats_server, tmp_path):
    database = tmp_path / "travi.db"
    in_flight = tmp_path / "in-flight"
    services = recorded_checkout(tmp_path, in_flight)
    env = executor_env(
        nats_server.url,
        f"sqlite:///{database}",
        tmp_path / "state",
        heartbeat_seconds="0.2",
        stale_after_seconds="1.5",
        services=services,
    )
    plan = plan_created()
    provider = TracerProvider()
    first = ExecutorProcess(env, tmp_path / "first.log").start()
    second = ExecutorProcess(env, tmp_path / "second.log")
    try:
        await first.wait_ready()
        async with BusTap(nats_server.url) as tap:
            async with Commander(nats_server.url, tracer_provider=provider) as commander:
                with provider.get_tracer("test").start_as_current_span("breach") as origin:
                    await commander.execute(plan)

            async def paused() -> bool:
                return step_status(database, str(plan.plan_id), "pause_traffic") == "succeeded"

            await wait_until(paused, 30, "pause_traffic succeeded")
            first.kill()
            in_flight.write_text("0")
            assert lines(tmp_path / "traffic") == ["paused"]

            second.start()
            await second.wait_ready()
            await tap.wait_for_outcomes(1, timeout=40)
    finally:
        first.kill()
        second.stop()

    stored = await read_stream(nats_server.url, "rollback.outcome.>")
    outcomes = bodies(stored)
    assert [o["outcome"] for o in outcomes] == ["completed"]
    trace_id = format(origin.get_span_context().trace_id, "032x")
    assert trace_id in stored[0].headers["traceparent"]
    assert len(lines(tmp_path / "switches")) <= 1
    assert lines(tmp_path / "switches") == ["checkout v1.1.0"]
    assert lines(tmp_path / "traffic")[-1] == "resumed"
    with sqlite3.connect(database) as connection:
        takeovers, status = connection.execute(
            "SELECT takeovers, status FROM executor_plans WHERE plan_id = ?", (str(plan.plan_id),)
        ).fetchone()
    assert takeovers == 1
    assert status == "completed"
    assert "Took over plan" in (tmp_path / "second.log").read_text()


@pytest.mark.postgres
async def test_two_processes_switch_each_plan_once(nats_server, postgres_url, tmp_path):
    plans = [plan_created(service=f"svc-{index:03d}") for index in range(200)]
    with FakeDeployer() as deployer:
        # Only the switch calls the deployer, which keeps the test short on a small machine.
        # The driver tests cover the other calls and the traffic control.
        config = {
            "driver": "http",
            "options": {
                "base_url": deployer.url,
                "endpoints": {"validate": None, "health": None, "cleanup": None},
            },
        }
        services = {plan.service: config for plan in plans}
        env = executor_env(
            nats_server.url,
            postgres_url,
            tmp_path / "state",
            heartbeat_seconds="1",
            stale_after_seconds="30",
            services=services,
        )
        replicas = [ExecutorProcess(env, tmp_path / f"replica-{n}.log").start() for n in range(2)]
        try:
            for replica in replicas:
                await replica.wait_ready()
            async with BusTap(nats_server.url) as tap:
                async with Commander(nats_server.url) as commander:
                    for plan in plans:
                        await commander.execute(plan)
                    for plan in plans[:20]:
                        await commander.execute(plan, actor="again")
                await tap.wait_for_outcomes(200, timeout=100)
        finally:
            for replica in replicas:
                replica.stop()

    outcomes = bodies(await read_stream(nats_server.url, "rollback.outcome.>"))
    assert len(outcomes) == 200
    assert {o["outcome"] for o in outcomes} == {"completed"}
    assert deployer.switches == {plan.service: 1 for plan in plans}
    with psycopg.connect(sync_url(postgres_url).replace("+psycopg", "")) as connection:
        owners = connection.execute("SELECT count(DISTINCT owner) FROM executor_plans").fetchone()[
            0
        ]
    assert owners == 2


async def test_sigkill_during_switch_fails_cleanly(nats_server, tmp_path):
    database = tmp_path / "travi.db"
    switches = tmp_path / "switches"
    services = {
        "checkout": {
            "driver": "command",
            "options": {"switch": record(switches, "{service} {version}", "3")},
            "traffic": "command",
            "traffic_options": {
                "pause": record(tmp_path / "traffic", "paused"),
                "resume": record(tmp_path / "traffic", "resumed"),
            },
        }
    }
    env = executor_env(
        nats_server.url,
        f"sqlite:///{database}",
        tmp_path / "state",
        heartbeat_seconds="0.2",
        stale_after_seconds="1.5",
        services=services,
    )
    plan = plan_created()
    first = ExecutorProcess(env, tmp_path / "first.log").start()
    second = ExecutorProcess(env, tmp_path / "second.log")
    try:
        await first.wait_ready()
        async with BusTap(nats_server.url) as tap:
            async with Commander(nats_server.url) as commander:
                await commander.execute(plan)

            async def switching() -> bool:
                return bool(lines(switches))

            await wait_until(switching, 30, "switch command started")
            first.kill()
            second.start()
            await second.wait_ready()
            await tap.wait_for_outcomes(1, timeout=40)
            escalations = tap.bodies("rollback.escalation.")
    finally:
        first.kill()
        second.stop()

    outcomes = bodies(await read_stream(nats_server.url, "rollback.outcome.>"))
    assert [o["outcome"] for o in outcomes] == ["failed"]
    assert outcomes[0]["failed_step"] == "switch_version"
    assert "cannot confirm" in outcomes[0]["error"]
    assert lines(switches) == ["checkout v1.1.0"]
    assert lines(tmp_path / "traffic")[-1] == "resumed"
    assert [e["reason"] for e in escalations] == ["switch_state_unknown"]


async def test_sigterm_hands_plan_back(nats_server, tmp_path):
    database = tmp_path / "travi.db"
    in_flight = tmp_path / "in-flight"
    services = recorded_checkout(tmp_path, in_flight)
    # A stale heartbeat would take 60 s, so a takeover within the test's time needs the hand-back.
    env = executor_env(
        nats_server.url,
        f"sqlite:///{database}",
        tmp_path / "state",
        heartbeat_seconds="0.2",
        stale_after_seconds="60",
        services=services,
    )
    plan = plan_created()
    first = ExecutorProcess(env, tmp_path / "first.log").start()
    second = ExecutorProcess(env, tmp_path / "second.log")
    try:
        await first.wait_ready()
        async with BusTap(nats_server.url) as tap:
            async with Commander(nats_server.url) as commander:
                await commander.execute(plan)

            async def draining() -> bool:
                status = step_status(database, str(plan.plan_id), "drain_connections")
                return status == "running"

            await wait_until(draining, 30, "drain running")
            first.stop()
            assert first.process.returncode == 0
            in_flight.write_text("0")
            second.start()
            await second.wait_ready()
            await tap.wait_for_outcomes(1, timeout=20)
    finally:
        first.kill()
        second.stop()

    outcomes = bodies(await read_stream(nats_server.url, "rollback.outcome.>"))
    assert [o["outcome"] for o in outcomes] == ["completed"]
    assert lines(tmp_path / "switches") == ["checkout v1.1.0"]
    assert lines(tmp_path / "traffic") == ["paused", "resumed"]
    assert "Handed plan" in (tmp_path / "first.log").read_text()
