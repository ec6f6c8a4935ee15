"""Delivery workers: one asyncio task per channel, sending the channel's stored messages in order.

The bus consumer only stores delivery intents and returns, so a slow or failing channel never
holds up the consumer or another channel. Each worker:

- holds a lease on its channel in the database, so with several replicas one sends at a time,
  which keeps the channel's messages in order and its rate limit shared;
- sends the oldest pending message once its retry time has come and the channel's minimum
  interval since the previous request has passed;
- on 429 or 420, pauses the whole channel for at least ``Retry-After``;
- gives up on a message by the rules in :mod:`.retry`, marks it failed and reports it.

Messages still pending at shutdown stay in the table and are sent after the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from services.notifier.channels import Channel
from services.notifier.models import Delivery
from services.notifier.repository import DeliveryStore
from services.notifier.retry import AttemptResult, Verdict, next_step
from shared.logs import bind

logger = logging.getLogger(__name__)

ATTEMPTS = Counter(
    "travi_notifier_attempts_total",
    "Delivery attempts by channel and result (delivered, rate_limited, retryable, rejected).",
    ["channel", "result"],
)
GAVE_UP = Counter(
    "travi_notifier_gave_up_total", "Messages a channel gave up on, by channel.", ["channel"]
)

GiveUpHandler = Callable[[Delivery, AttemptResult, str], Awaitable[None]]


class ChannelWorker:
    """Sends one channel's pending deliveries, one at a time."""

    def __init__(
        self,
        channel: Channel,
        store: DeliveryStore,
        *,
        holder: str,
        lease_seconds: float,
        poll_seconds: float,
        on_give_up: GiveUpHandler,
    ) -> None:
        self.channel = channel
        self._store = store
        self._holder = holder
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._on_give_up = on_give_up
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._not_before = 0.0
        self._lease_until = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker task."""
        self._task = asyncio.create_task(self._run(), name=f"notifier-{self.channel.name}")
        logger.info("Started the %s delivery worker.", self.channel.name)

    def wake(self) -> None:
        """Look for new work now instead of at the next poll."""
        self._wakeup.set()

    async def stop(self, grace_seconds: float) -> None:
        """Let a request in flight finish for up to ``grace_seconds``, then cancel the task."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace_seconds)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._store.release_lease(self.channel.name, self._holder)
        self._task = None
        logger.info("Stopped the %s delivery worker.", self.channel.name)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when woken or stopping."""
        if self._stopping or seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "The %s delivery worker failed; retrying in %.1f s.",
                    self.channel.name, self._poll_seconds,
                )
                await self._sleep(self._poll_seconds)

    async def _step(self) -> None:
        name = self.channel.name
        if not await self._hold_lease():
            await self._sleep(min(self._poll_seconds, self._lease_seconds / 3))
            return
        delivery = await self._store.head(name)
        if delivery is None:
            await self._sleep(self._poll_seconds)
            return
        due = max(delivery.next_attempt_at, self._not_before)
        wait = due - time.time()
        if wait > 0:
            # Sleep in slices shorter than the lease, so that it is renewed while waiting.
            await self._sleep(min(wait, self._lease_seconds / 3))
            return
        if self._stopping:
            return
        await self._attempt(delivery)

    async def _hold_lease(self) -> bool:
        """Take the channel's lease, renewing it once a third of it has passed."""
        now = time.time()
        if now < self._lease_until - self._lease_seconds * 2 / 3:
            return True
        if not await self._store.acquire_lease(
            self.channel.name, self._holder, self._lease_seconds
        ):
            self._lease_until = 0.0
            return False
        self._lease_until = now + self._lease_seconds
        return True

    async def _attempt(self, delivery: Delivery) -> None:
        with bind(plan_id=None if delivery.plan_key == "-" else delivery.plan_key,
                  environment=delivery.environment, service=delivery.service,
                  event_id=delivery.source_event_id):
            try:
                result = await self.channel.send(delivery)
            except Exception as exc:  # noqa: BLE001 - a bug in a channel must not stop the worker.
                # Only the type is logged: the message of an unexpected error may contain a URL.
                logger.error(  # noqa: TRY400 - the traceback would carry that message too.
                    "The %s channel failed unexpectedly with %s.",
                    self.channel.name, type(exc).__name__,
                )
                result = AttemptResult(None, error=f"unexpected {type(exc).__name__}")
            self._not_before = time.time() + self.channel.min_interval
            ATTEMPTS.labels(channel=self.channel.name, result=result.verdict.value).inc()
            if result.verdict is Verdict.DELIVERED:
                await self._store.mark_sent(delivery.id, result)
                logger.info(
                    "Sent %s %s notification (attempt %d).",
                    self.channel.name, delivery.kind, delivery.attempts + 1,
                )
                return
            await self._handle_failure(delivery, result)

    async def _handle_failure(self, delivery: Delivery, result: AttemptResult) -> None:
        counts = result.verdict is not Verdict.RATE_LIMITED
        failures = delivery.failures + (1 if counts else 0)
        step = next_step(
            result,
            failures=failures,
            age_seconds=time.time() - delivery.created_at,
            policy=self.channel.policy,
        )
        if step.give_up:
            await self._store.mark_failed(delivery.id, result, step.reason)
            GAVE_UP.labels(channel=self.channel.name).inc()
            logger.error(
                "Gave up on %s %s notification: %s", self.channel.name, delivery.kind, step.reason
            )
            await self._on_give_up(delivery, result, step.reason)
            return
        if result.verdict is Verdict.RATE_LIMITED:
            # The limit is the endpoint's, so every message of the channel waits.
            self._not_before = max(self._not_before, time.time() + step.delay)
        await self._store.schedule_retry(
            delivery.id, result, delay=step.delay, counts=step.counts_as_attempt
        )
        logger.warning(
            "Retrying %s %s notification in %.1f s (attempt %d failed): %s",
            self.channel.name, delivery.kind, step.delay, delivery.attempts + 1, step.reason,
        )
