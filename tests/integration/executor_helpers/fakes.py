"""Fakes for executor tests: an event sink that keeps events, a recording driver and traffic."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from services.executor.drivers.base import DeploymentDriver, Target, TrafficControl
from services.executor.errors import StepFailed


class ListSink:
    """Keeps every sent event; ``fail_types`` names event types whose send raises."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.fail_types: set[str] = set()

    async def send(self, subject: str, event: Any) -> None:
        if type(event).__name__ in self.fail_types:
            raise ConnectionError("bus down")
        self.sent.append((subject, event))

    def of_type(self, name: str) -> list[Any]:
        return [event for _, event in self.sent if type(event).__name__ == name]


class Recorder:
    """What the fake driver and traffic did, shared across instances of one test."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.order: list[str] = []
        self.paused = False
        self.fail: set[str] = set()
        self.sleep: dict[str, float] = {}
        self.switched_to: str | None = None

    async def act(self, name: str) -> None:
        self.calls[name] += 1
        self.order.append(name)
        if name in self.sleep:
            await asyncio.sleep(self.sleep[name])
        if name in self.fail:
            raise StepFailed(f"{name} failed on purpose")


RECORDER = Recorder()


class FakeDriver(DeploymentDriver):
    kind = "fake"
    switch_is_idempotent = False

    def __init__(self, options: dict, where: str) -> None:
        self.recorder: Recorder = options.get("recorder", RECORDER)

    async def validate_target(self, target: Target) -> None:
        await self.recorder.act("validate")

    async def switch(self, target: Target) -> None:
        await self.recorder.act("switch")
        self.recorder.switched_to = target.to_version

    async def is_switched(self, target: Target) -> bool | None:
        return self.recorder.switched_to == target.to_version

    async def check_health(self, target: Target) -> None:
        await self.recorder.act("health")

    async def cleanup(self, target: Target) -> None:
        await self.recorder.act("cleanup")


class FakeTraffic(TrafficControl):
    kind = "fake"

    def __init__(self, options: dict, where: str) -> None:
        self.recorder: Recorder = options.get("recorder", RECORDER)
        self.drain_seconds = float(options.get("drain_seconds", 0))

    async def pause(self, target: Target) -> None:
        await self.recorder.act("pause")
        self.recorder.paused = True

    async def resume(self, target: Target) -> None:
        await self.recorder.act("resume")
        self.recorder.paused = False

    async def in_flight(self, target: Target) -> int | None:
        return None
