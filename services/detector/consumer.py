"""The hot path: pull metrics from JetStream in batches, apply them, acknowledge, publish breaches.

It uses nats-py directly, on a connection of its own, because a handler call per message caps
throughput at about a third of what the server delivers. The durable pull consumer acknowledges
with ``AckPolicy.ALL``: after a fetched batch is applied to the windows, one acknowledgement of
its last message acknowledges the batch.

On start it rebuilds the windows from the last window's worth of the stream. An ephemeral
consumer reads from ``now - window_seconds`` up to the stream's last sequence at that moment,
and the durable consumer, if it is new, is created just past that sequence. A redelivered
message at or below the replayed sequence, or below one already applied, is skipped, so no
observation counts twice. Breaches found while replaying are published again with the same
deterministic ``event_id``, which JetStream's duplicate window and the planner's inbox drop if
they were published before the restart. The ``event_id`` matches only when the replay starts
early enough to rebuild the window as it was at the crossing. Otherwise the planner receives a
second breach of the same version, which its cooldown suppresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

import nats
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from services.detector.metrics import (
    EVALUATIONS,
    MESSAGES_SKIPPED,
    OBSERVATIONS_ACCEPTED,
    OBSERVATIONS_REJECTED,
)
from services.detector.observations import INVALID_ENVELOPE, ParsedMessage, Rejection, parse_message
from services.detector.publisher import BreachPublisher
from services.detector.triggers import Decision, Detector
from shared.bus import METRICS_STREAM, dead_letter
from shared.contracts import BreachDetected
from shared.errors import ConfigurationError
from shared.logs import bind
from shared.settings import Settings

logger = logging.getLogger(__name__)

FETCH_TIMEOUT = 0.2  # seconds a fetch waits for traffic; it bounds the added latency when idle
HOUSEKEEPING_SECONDS = 1.0
ACK_WAIT_SECONDS = 30.0
MAX_DELIVER = 5
RECONNECT_DELAY = 1.0
REJECTION_LOG_INTERVAL = 10.0  # seconds; rejected observations are logged at most this often
# A fetch should stay well below nats-py's 256 MiB pending limit of a JetStream subscription:
# past it the client drops messages, and acknowledging a later one with AckPolicy.ALL would
# acknowledge them unread. Fetches start small and grow while their bytes stay under the target.
FETCH_BYTES_TARGET = 32 * 1024 * 1024
INITIAL_FETCH_BATCH = 100


class MetricsConsumer:
    """Pulls ``metrics.>`` through a durable consumer into a :class:`Detector`."""

    def __init__(
        self,
        settings: Settings,
        detector: Detector,
        publisher: BreachPublisher,
        broker: NatsBroker,
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.publisher = publisher
        self.broker = broker
        self.durable = settings.detector.consumer_name
        self.replayed_through = 0
        self.applied_through = 0
        self._connection: nats.NATS | None = None
        self._js = None
        self._subscription = None
        self._task: asyncio.Task[None] | None = None
        self._next_housekeeping = 0.0
        self._last_rejection_log = -REJECTION_LOG_INTERVAL
        self._rejected_since_log = 0

    async def start(self) -> None:
        """Connect, rebuild the windows from the stream, bind the durable consumer, pull."""
        await self.connect()
        last, replayed = await self.rebuild()
        await self.bind(last)
        self._task = asyncio.create_task(self.run(), name="detector-metrics")
        logger.info(
            "Detector consumer %s started: rebuilt %d windows from %d messages up to sequence %d.",
            self.durable, len(self.detector.windows), replayed, last,
        )

    async def connect(self) -> None:
        """Open the consumer's own NATS connection."""
        if self.settings.nats_url is None:
            raise ConfigurationError("TRAVI_NATS_URL is not set: the detector needs NATS")
        self._connection = await nats.connect(
            self.settings.nats_url, name=f"travi-{self.durable}", max_reconnect_attempts=-1
        )
        self._js = self._connection.jetstream()

    async def rebuild(self) -> tuple[int, int]:
        """Replay the last window of the stream; return its last sequence and the messages read."""
        info = await self._js.stream_info(METRICS_STREAM.name)
        last = info.state.last_seq
        replayed = await self._replay(self._js, last)
        self.replayed_through = self.applied_through = last
        return last, replayed

    async def bind(self, last: int) -> None:
        """Bind the durable consumer, creating it just past sequence ``last`` if it is new."""
        self._subscription = await self._bind(self._js, last)

    async def stop(self) -> None:
        """Stop pulling and close the connection; unacknowledged messages are redelivered."""
        if self._task is not None:
            # NOTE: a cancel that lands while nats-py's fetch is timing out can be swallowed
            # (asyncio.wait_for in Python 3.11), and the pull loop then goes on forever. So the
            # cancel is repeated until the task has ended.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        logger.info(
            "Detector consumer %s stopped at sequence %d.", self.durable, self.applied_through
        )

    def _replay_seconds(self) -> float:
        settings = self.settings.detector
        windows = [settings.window_seconds]
        windows += [o.window_seconds for o in settings.overrides.values() if o.window_seconds]
        return max(windows)

    async def _replay(self, js, last: int) -> int:  # noqa: ANN001 - nats JetStreamContext
        """Apply the messages of the last window up to sequence ``last``; return their number."""
        if last == 0:
            return 0
        start = datetime.now(UTC) - timedelta(seconds=self._replay_seconds())
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        subscription = await js.pull_subscribe(
            METRICS_STREAM.subjects[0], durable=None, stream=METRICS_STREAM.name, config=config
        )
        count = 0
        try:
            while True:
                try:
                    messages = await subscription.fetch(
                        self.settings.detector.fetch_batch, timeout=1.0
                    )
                except TimeoutError:
                    return count
                now = time.time()
                for msg in messages:
                    sequence, _deliveries = delivery_of(msg)
                    if sequence > last:
                        return count
                    self._apply(msg, sequence, now)
                    count += 1
                if sequence >= last:
                    return count
        finally:
            self._flush_counts()
            await subscription.unsubscribe()

    async def _bind(self, js, last: int):  # noqa: ANN001, ANN202 - nats-py types
        try:
            info = await js.consumer_info(METRICS_STREAM.name, self.durable)
        except NotFoundError:
            info = None
        if info is not None and info.config.ack_policy != AckPolicy.ALL:
            # Acknowledging a batch by its last message needs AckPolicy.ALL. The windows were
            # just rebuilt up to ``last``, so a consumer recreated past it loses nothing.
            logger.warning("Recreating consumer %s, whose ack policy is %s, with 'all'.",
                           self.durable, info.config.ack_policy)
            await js.delete_consumer(METRICS_STREAM.name, self.durable)
            info = None
        if info is None:
            config = ConsumerConfig(
                durable_name=self.durable,
                description="TRAVI detector: metric events into windows",
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if last else DeliverPolicy.ALL,
                opt_start_seq=last + 1 if last else None,
                ack_policy=AckPolicy.ALL,
                ack_wait=ACK_WAIT_SECONDS,
                max_deliver=MAX_DELIVER,
                max_ack_pending=max(20_000, 4 * self.settings.detector.fetch_batch),
                filter_subject=METRICS_STREAM.subjects[0],
            )
            await js.add_consumer(METRICS_STREAM.name, config)
            logger.info("Created durable consumer %s on %s.", self.durable, METRICS_STREAM.name)
        return await js.pull_subscribe_bind(self.durable, stream=METRICS_STREAM.name)

    async def run(self) -> None:
        """Pull, apply and acknowledge batches until cancelled."""
        limit = self.settings.detector.fetch_batch
        batch = min(limit, INITIAL_FETCH_BATCH)
        while True:
            try:
                messages = await self._subscription.fetch(batch, timeout=FETCH_TIMEOUT)
            except TimeoutError:
                messages = []
            except (nats.errors.Error, OSError) as exc:
                logger.warning(
                    "Fetching metrics failed (%r); retrying in %.0f s.", exc, RECONNECT_DELAY
                )
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            try:
                if messages:
                    await self._handle_batch(messages)
                    size = sum(len(m.data) for m in messages)
                    batch = next_fetch_size(batch, limit, len(messages), size)
                self._housekeeping()
            except Exception:  # noqa: BLE001 - the loop must outlive any bug in one batch.
                logger.exception("Handling %d metrics messages failed; they will be redelivered.",
                                 len(messages))
                await asyncio.sleep(RECONNECT_DELAY)

    async def _handle_batch(self, messages: list[Msg]) -> None:
        """Apply a fetched batch in order, dead-letter what has no valid observation, ack it."""
        to_dead_letter: list[tuple[Msg, str]] = []
        now = time.time()
        accepted = 0
        for msg in messages:
            sequence, deliveries = delivery_of(msg)
            if sequence <= self.replayed_through or (
                sequence <= self.applied_through and deliveries > 1
            ):
                MESSAGES_SKIPPED.inc()
                continue
            parsed = self._apply(msg, sequence, now)
            if parsed is None:
                to_dead_letter.append((msg, "the detector failed on this message; see its log"))
                continue
            accepted += parsed.accepted
            if parsed.rejections:
                error = self._count_rejections(msg, sequence, parsed)
                if error is not None:
                    to_dead_letter.append((msg, error))
        OBSERVATIONS_ACCEPTED.inc(accepted)
        self._flush_counts()
        for msg, error in to_dead_letter:
            try:
                await dead_letter(self.broker, self.durable, msg.subject, msg.data, error)
            except Exception:  # noqa: BLE001 - a lost dead letter must not stop the detector.
                logger.exception(
                    "Sending a message from %s to the dead-letter subject failed.", msg.subject
                )
        try:
            await messages[-1].ack()
        except (nats.errors.Error, OSError) as exc:
            logger.warning("Acknowledging %d metrics messages failed (%r); they will be "
                           "redelivered and skipped.", len(messages), exc)

    def _apply(self, msg: Msg, sequence: int, now: float) -> ParsedMessage | None:
        """Apply one message and publish what fires; return None when the detector failed."""
        try:
            parsed = self._parse(msg, now)
            decisions = self.detector.apply(parsed, sequence, now)
        except Exception:  # noqa: BLE001 - one bad message must not stop the detector.
            logger.exception("Applying metrics message %d from %s failed.", sequence, msg.subject)
            return None
        if sequence > self.applied_through:
            self.applied_through = sequence
        if decisions:
            self._handle_decisions(decisions, msg.headers)
        return parsed

    def _count_rejections(self, msg: Msg, sequence: int, parsed: ParsedMessage) -> str | None:
        """Count the rejected observations; return the dead-letter error if none was valid."""
        for rejection in parsed.rejections:
            OBSERVATIONS_REJECTED.labels(reason=rejection.reason).inc()
        self._rejected_since_log += len(parsed.rejections)
        now = time.monotonic()
        if now - self._last_rejection_log >= REJECTION_LOG_INTERVAL:
            logger.warning(
                "Rejected %d observations since the last report; message %d on %s: %s",
                self._rejected_since_log, sequence, msg.subject, parsed.describe_rejections(3),
            )
            self._last_rejection_log = now
            self._rejected_since_log = 0
        return parsed.describe_rejections() if parsed.accepted == 0 else None

    def _parse(self, msg: Msg, now: float) -> ParsedMessage:
        parts = msg.subject.split(".")
        if len(parts) != 3:
            parsed = ParsedMessage()
            parsed.rejections.append(
                Rejection(INVALID_ENVELOPE, "subject",
                          f"subject {msg.subject!r} is not metrics.<env>.<svc>: publish there")
            )
            return parsed
        return parse_message(
            msg.data,
            subject_environment=parts[1],
            subject_service=parts[2],
            now=now,
            max_clock_skew=self.settings.detector.max_clock_skew_seconds,
        )

    def _handle_decisions(
        self, decisions: list[Decision], trace_headers: dict[str, str] | None = None
    ) -> None:
        for decision in decisions:
            with bind(environment=decision.environment, service=decision.service,
                      event_id=decision.event_id):
                if not decision.fired:
                    logger.info("Trigger %s of %s version %s passed again and re-armed.",
                                decision.trigger, decision.service,
                                decision.version or "(unknown)")
                    continue
                logger.info(
                    "Trigger %s of %s version %s entered breach: %s",
                    decision.trigger, decision.service, decision.version or "(unknown)",
                    decision.detail,
                )
                self.publisher.submit(breach_event(decision), trace_headers)

    def _housekeeping(self) -> None:
        now = time.time()
        if now < self._next_housekeeping:
            return
        self._next_housekeeping = now + HOUSEKEEPING_SECONDS
        decisions = self.detector.advance_idle(now, HOUSEKEEPING_SECONDS, self.applied_through)
        self._handle_decisions(decisions)
        self._flush_counts()

    def _flush_counts(self) -> None:
        outcomes = self.detector.outcomes
        for (trigger, outcome), count in outcomes.items():
            EVALUATIONS.labels(trigger=trigger, outcome=outcome).inc(count)
        outcomes.clear()


def next_fetch_size(current: int, limit: int, fetched: int, fetched_bytes: int) -> int:
    """Return the next fetch size: smaller when the last fetch was over the byte target, double
    (up to ``limit``) when it was a full fetch under a quarter of it."""
    if fetched_bytes > FETCH_BYTES_TARGET:
        return max(1, current * FETCH_BYTES_TARGET // fetched_bytes)
    if fetched >= current and fetched_bytes < FETCH_BYTES_TARGET // 4:
        return min(limit, current * 2)
    return current


def delivery_of(msg: Msg) -> tuple[int, int]:
    """Return the stream sequence and the delivery count of a JetStream message.

    Both are read from the reply subject, ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream
    seq>.<consumer seq>.<time>.<pending>``. nats-py 2.16's ``msg.metadata`` parses the same
    fields but also builds a datetime, which cost about 11 us a message on a 2-core machine, as
    much as validating it. The longer form with a domain and an account hash goes through
    ``msg.metadata``.
    """
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[4])
    metadata = msg.metadata
    return metadata.sequence.stream, metadata.num_delivered


def breach_event(decision: Decision) -> BreachDetected:
    """Return the BreachDetected event of a breach that fired."""
    return BreachDetected(
        event_id=decision.event_id,
        environment=decision.environment,
        service=decision.service,
        version=decision.version,
        trigger=decision.trigger,
        measured=decision.measured,
        threshold=decision.threshold,
        window_seconds=decision.window_seconds,
        samples=decision.samples,
        detail=decision.detail[:2000],
    )
