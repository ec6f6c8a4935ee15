"""Helpers for the executor tests on a real nats-server: commands, stream reads, processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from shared.bus import (
    CANCEL_SUBJECT,
    EXECUTE_SUBJECT,
    ROLLBACK_STREAM,
    declare_streams,
    make_broker,
    publish,
)
from shared.contracts import CancelPlan, ExecutePlan, PlanCreated, utc_now
from shared.settings import Settings

HELPERS = Path(__file__).parent
RECORD = str(HELPERS / "record.py")
TRAVI = str(Path(sys.executable).with_name("travi"))


def plan_created(service: str = "checkout", **overrides: object) -> PlanCreated:
    values: dict[str, object] = {
        "plan_id": uuid.uuid4(),
        "environment": "production",
        "service": service,
        "from_version": "v1.2.0",
        "to_version": "v1.1.0",
        "trigger": "error_rate",
        "trigger_type": "automatic",
        "actor": "detector",
        "created_at": utc_now(),
    }
    values.update(overrides)
    return PlanCreated.model_validate(values)


def record(path: Path, line: str, *extra: str) -> list[str]:
    """Return the argument list that appends ``line`` to ``path`` (see record.py)."""
    return [sys.executable, "-S", RECORD, str(path), line, *extra]


class Commander:
    """Publishes execute and cancel commands as the planner would."""

    def __init__(self, url: str, tracer_provider: Any = None) -> None:
        self.broker = make_broker(url, tracer_provider=tracer_provider)

    async def __aenter__(self) -> Commander:
        await self.broker.connect()
        await declare_streams(self.broker, Settings())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.broker.stop()

    async def execute(self, plan: PlanCreated, actor: str = "alice") -> None:
        await publish(self.broker, EXECUTE_SUBJECT, ExecutePlan(plan=plan, actor=actor))

    async def cancel(self, plan: PlanCreated, actor: str = "bob", reason: str = "") -> None:
        await publish(
            self.broker, CANCEL_SUBJECT, CancelPlan(plan=plan, actor=actor, reason=reason)
        )


async def read_stream(url: str, subject: str) -> list[Any]:
    """Return every message stored in the rollback stream on ``subject`` (wildcards allowed)."""
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        subscription = await js.pull_subscribe(
            subject,
            durable=f"test-{uuid.uuid4().hex[:8]}",
            stream=ROLLBACK_STREAM.name,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        messages: list[Any] = []
        while True:
            try:
                batch = await subscription.fetch(500, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            messages.extend(batch)
            for message in batch:
                await message.ack()
        return messages
    finally:
        await connection.close()


def bodies(messages: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(message.data) for message in messages]


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, description: str = "condition"
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{description} not met within {timeout} s")
        await asyncio.sleep(0.05)


def executor_env(
    nats_url: str, database_url: str, state_dir: Path, **executor: Any
) -> dict[str, str]:
    """Environment of a ``travi run executor`` process."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAVI_")}
    env.update(
        {
            "TRAVI_NATS_URL": nats_url,
            "TRAVI_DATABASE_URL": database_url,
            "TRAVI_STATE_DIR": str(state_dir),
            "TRAVI_HTTP_PORT": "0",
            "TRAVI_LOG_FORMAT": "text",
            "TRAVI_LOG_LEVEL": "INFO",
        }
    )
    for key, value in executor.items():
        env[f"TRAVI_EXECUTOR__{key.upper()}"] = (
            value if isinstance(value, str) else json.dumps(value)
        )
    return env


class ExecutorProcess:
    """``travi run executor`` in its own process, with its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ExecutorProcess:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [TRAVI, "run", "executor"],
            env=self.env,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
        )
        handle.close()
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"executor exited with {self.process.returncode}:\n"
                    f"{self.log.read_text()[-3000:]}"
                )
            return "listening on" in self.log.read_text()

        await wait_until(listening, timeout, "executor start-up")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class BusTap:
    """A core NATS subscription on ``rollback.>`` that keeps every message it receives.

    A core subscriber also receives publishes that JetStream drops as duplicates, so tests count
    stored events with :func:`read_stream` and use the tap only to wait.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[Any] = []
        self.connection: Any = None

    async def __aenter__(self) -> BusTap:
        self.connection = await nats.connect(self.url)

        async def keep(message: Any) -> None:
            self.messages.append(message)

        await self.connection.subscribe("rollback.>", cb=keep)
        await self.connection.flush()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.connection.close()

    def bodies(self, prefix: str) -> list[dict[str, Any]]:
        return [json.loads(m.data) for m in self.messages if m.subject.startswith(prefix)]

    async def wait_for_outcomes(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        async def enough() -> bool:
            return len({b["plan_id"] for b in self.bodies("rollback.outcome.")}) >= count

        await wait_until(enough, timeout, f"{count} outcomes")
        return self.bodies("rollback.outcome.")
