"""Publishing of breach events off the hot path, with retries until JetStream stores them.

The metrics consumer hands each breach to :class:`BreachPublisher` and moves on. One task
publishes them in order through :func:`shared.bus.publish` and retries a failed publish with a
growing delay. Each publish runs in a span whose parent is the trace context (``traceparent``)
of the metrics message that made the trigger fire, so the breach continues the producer's
trace. A breach's ``event_id`` is deterministic, so a retry or a replay after a restart is
stored once by JetStream's duplicate window and dropped by the planner's inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from faststream.nats import NatsBroker
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, TracerProvider, get_tracer

from services.detector.metrics import BREACH_PUBLISH_FAILURES, BREACHES
from shared.bus import publish
from shared.contracts import BreachDetected
from shared.logs import bind
from shared.names import subject

logger = logging.getLogger(__name__)

MAX_PENDING = 10_000
MAX_RETRY_DELAY = 5.0


class BreachPublisher:
    """A bounded queue of breach events and the task that publishes them."""

    def __init__(
        self,
        broker: NatsBroker,
        *,
        timeout: float,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._broker = broker
        self._timeout = timeout
        self._tracer = get_tracer(__name__, tracer_provider=tracer_provider)
        self._queue: asyncio.Queue[tuple[BreachDetected, Mapping[str, str]]] = asyncio.Queue(
            MAX_PENDING
        )
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def submit(self, event: BreachDetected, trace_headers: Mapping[str, str] | None = None) -> None:
        """Queue ``event`` for publishing without waiting; drop it (logged) if the queue is full.

        ``trace_headers`` are the headers of the message that caused the breach, if any.
        """
        try:
            self._queue.put_nowait((event, trace_headers or {}))
        except asyncio.QueueFull:
            self.dropped += 1
            logger.error(
                "Dropped breach %s of %s/%s because %d breaches are waiting to be published.",
                event.event_id, event.environment, event.service, MAX_PENDING,
            )

    async def start(self) -> None:
        """Start the publishing task."""
        self._task = asyncio.create_task(self._run(), name="detector-breach-publisher")

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Publish what is queued (for up to ``drain_timeout`` seconds), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if not self._queue.empty():
            logger.warning("Stopped with %d breaches unpublished.", self._queue.qsize())

    async def drained(self) -> None:
        """Wait until every queued breach is published."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            event, trace_headers = await self._queue.get()
            parent = propagate.extract(trace_headers)
            try:
                with self._tracer.start_as_current_span(
                    "detector breach", context=parent, kind=SpanKind.PRODUCER
                ):
                    await self._publish_until_stored(event)
            finally:
                self._queue.task_done()

    async def _publish_until_stored(self, event: BreachDetected) -> None:
        target = subject("rollback.breach", event.environment, event.service)
        delay = 0.1
        with bind(environment=event.environment, service=event.service, event_id=event.event_id):
            while True:
                try:
                    await publish(self._broker, target, event, timeout=self._timeout)
                except Exception as exc:  # noqa: BLE001 - any bus failure is retried.
                    BREACH_PUBLISH_FAILURES.inc()
                    logger.warning(
                        "Publishing breach %s on %s failed (%r); retrying in %.1f s.",
                        event.event_id, target, exc, delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
                BREACHES.labels(trigger=event.trigger).inc()
                logger.info(
                    "Published %s breach of %s version %s on %s: %s",
                    event.trigger, event.service, event.version, target, event.detail,
                )
                return
