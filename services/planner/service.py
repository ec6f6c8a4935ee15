"""Wiring of the planner service: subscribers, HTTP routes and lifecycle hooks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from pathlib import Path

from faststream.nats import NatsBroker

from services.planner.planning import Planner
from services.planner.routes import build_router
from services.planner.subscribers import register_subscribers
from shared.bus import publish
from shared.contracts import Contract
from shared.service import Service, ServiceContext

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Age after which the relay publishes an outbox event that its own request left unpublished.
# A younger event is most likely being published by that request at this moment.
RELAY_MIN_AGE = timedelta(seconds=5)


class BusPublisher:
    """Publishes contracts to JetStream and waits for the stream's acknowledgement."""

    def __init__(self, broker: NatsBroker, timeout: float) -> None:
        self._broker = broker
        self._timeout = timeout

    async def __call__(self, subject: str, event: Contract) -> None:
        await publish(self._broker, subject, event, timeout=self._timeout)


class BackgroundLoop:
    """Re-checks deferred breaches and publishes left-behind outbox events, at an interval.

    The first pass runs as soon as the loop starts, so breaches whose cooldown ended while no
    planner was running are decided at start-up.
    """

    def __init__(self, planner: Planner, interval: float) -> None:
        self._planner = planner
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name="planner-background-loop")

    async def stop(self) -> None:
        """Stop the loop and wait for it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._recheck_deferred()
            await self._relay_outbox()
            await asyncio.sleep(self._interval)

    async def _recheck_deferred(self) -> None:
        try:
            count = await self._planner.recheck_deferred()
        except Exception:  # A database or bus outage must not end the loop.
            logger.warning(
                "Re-checking deferred breaches failed; retrying in %.1f s.",
                self._interval,
                exc_info=True,
            )
        else:
            if count:
                logger.info("Settled %d deferred breaches after their cooldown.", count)

    async def _relay_outbox(self) -> None:
        try:
            count = await self._planner.publish_outbox(
                created_before=self._planner.clock() - RELAY_MIN_AGE
            )
        except Exception:  # A database or bus outage must not end the loop.
            logger.warning(
                "The outbox relay failed; retrying in %.1f s.", self._interval, exc_info=True
            )
        else:
            if count:
                logger.info("The outbox relay published %d left-behind events.", count)


def create(context: ServiceContext) -> Service:
    """Register the planner subscribers on the broker and return the service."""
    settings = context.settings
    publisher = BusPublisher(context.broker, settings.publish_timeout_seconds)
    planner = Planner(context.db, publisher, settings.planner)
    register_subscribers(context.broker, planner)
    loop = BackgroundLoop(planner, settings.planner.outbox_relay_seconds)
    return Service(
        name="planner",
        migrations=MIGRATIONS,
        router=build_router(planner, context.auth),
        on_start=[planner.warm_up, loop.start],
        on_stop=[loop.stop],
    )
