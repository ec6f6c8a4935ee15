"""The contract between the runner and each service.

A service module exposes ``create(context) -> Service``. ``create`` registers the service's
subscribers on ``context.broker`` (before the broker starts) and returns a ``Service`` with its
HTTP router, its migrations folder and its start and stop hooks. The runner composes any
number of them into one process and one HTTP app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter
from faststream.nats import NatsBroker
from opentelemetry.trace import TracerProvider

from shared.auth import Authenticator
from shared.db import Database
from shared.settings import Settings


@dataclass
class ServiceContext:
    """Everything a service needs, built once per process by the runner."""

    settings: Settings
    broker: NatsBroker
    db: Database
    auth: Authenticator
    tracer_provider: TracerProvider


@dataclass
class Service:
    """One service as the runner composes it."""

    name: str
    migrations: Path
    router: APIRouter | None = None
    # Coroutines without arguments, run after the broker has started and before it stops.
    on_start: list = field(default_factory=list)
    on_stop: list = field(default_factory=list)

    async def start(self) -> None:
        """Run the start hooks in order."""
        for hook in self.on_start:
            await hook()

    async def stop(self) -> None:
        """Run the stop hooks in reverse order."""
        for hook in reversed(self.on_stop):
            await hook()
