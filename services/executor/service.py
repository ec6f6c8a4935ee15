"""Wiring of the executor service: the command and breach consumers, the sweeper's lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faststream.nats import NatsMessage
from nats.js.api import DeliverPolicy

from services.executor.commands import CONSUMER, CommandHandler
from services.executor.events import BusSink
from services.executor.executor import Executor
from services.executor.repository import ExecutorRepository
from services.executor.watch import WatchPeriod
from shared.bus import CANCEL_SUBJECT, EXECUTE_SUBJECT, ROLLBACK_STREAM, subscribe
from shared.contracts import BreachDetected
from shared.service import Service, ServiceContext

MIGRATIONS = Path(__file__).with_name("migrations")
WATCH_CONSUMER = "executor-watch"
# How long a breach waits before the watch period checks it, seconds.
WATCH_SETTLE_SECONDS = 0.25


def create(context: ServiceContext) -> Service:
    """Register the executor's consumers on the broker and return the service."""
    settings = context.settings
    repo = ExecutorRepository(context.db)
    sink = BusSink(context.broker, timeout=settings.publish_timeout_seconds)
    executor = Executor(
        settings=settings,
        repo=repo,
        sink=sink,
        tracer=context.tracer_provider.get_tracer("services.executor"),
    )
    subscribe(
        context.broker,
        subjects=[EXECUTE_SUBJECT, CANCEL_SUBJECT],
        stream=ROLLBACK_STREAM,
        durable=CONSUMER,
        model=dict[str, Any],
        handler=CommandHandler(context.broker, executor),
        ack_wait=settings.executor.ack_wait_seconds,
        description="Execute and cancel commands, shared by every executor replica.",
    )
    if settings.executor.watch_seconds > 0:
        watch = WatchPeriod(repo, sink)

        async def on_breach(breach: BreachDetected, _msg: NatsMessage) -> None:
            await watch.on_breach(breach)

        subscribe(
            context.broker,
            subjects=["rollback.breach.>"],
            stream=ROLLBACK_STREAM,
            durable=WATCH_CONSUMER,
            model=BreachDetected,
            handler=on_breach,
            deliver_policy=DeliverPolicy.NEW,
            # An escalation a quarter second later changes nothing for the people it reaches,
            # and the planner decides the same breach without this query beside it.
            settle_seconds=WATCH_SETTLE_SECONDS,
            description="Breaches of restored versions during their watch period.",
        )
    return Service(
        name="executor",
        migrations=MIGRATIONS,
        on_start=[executor.warm_up, executor.start],
        on_stop=[executor.stop],
    )
