"""Rebuild the stats view: wipe it and replay the rollback stream from its first message.

The replay reads the stream through an ordered consumer of its own, which is ephemeral, so
the live durable consumer keeps its place. It reads up to the last message stored when the
rebuild began and applies every event in one transaction, with the live consumer's code. Readers see
the old view until the new one is committed.

Only what the stream still retains can be replayed: plans older than the stream's maximum age
(``TRAVI_EVENTS_MAX_AGE_SECONDS``) are lost by a rebuild.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import ROLLBACK_STREAM
from shared.db import Database

from services.stats.consumer import EventApplier, InvalidEvent, UnknownSubject, decode
from services.stats.models import VIEW_TABLES
from services.stats.store import RollbackEvent, apply_events, wipe

logger = logging.getLogger(__name__)

JSON_OBJECT = TypeAdapter(dict)
# How long the replay waits for the next message before it concludes the stream has no more.
NEXT_MESSAGE_TIMEOUT_SECONDS = 5.0
# Events applied per batch: each batch costs a few statements whatever its size.
REPLAY_BATCH_SIZE = 500


@dataclass(frozen=True)
class RebuildResult:
    """Counts of the messages a rebuild replayed."""

    messages: int
    applied: int
    skipped: int
    last_sequence: int
    seconds: float


async def _lock_view(session: AsyncSession) -> None:
    # On PostgreSQL, other replicas' consumers wait until the new view is committed. On SQLite
    # the first write takes the database's write lock, which has the same effect.
    if session.get_bind().dialect.name == "postgresql":
        names = ", ".join(table.__tablename__ for table in VIEW_TABLES)
        await session.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))


async def rebuild(db: Database, connection: NatsClient, applier: EventApplier | None = None) -> RebuildResult:
    """Wipe the view and replay the rollback stream into it; return what was replayed.

    ``applier`` is the live consumer's, when it runs in this process: it is paused for the
    duration, and the events it receives meanwhile are applied (or skipped as repeats) after.
    """
    started = time.monotonic()
    if applier is not None:
        async with applier.lock:
            return await _replay(db, connection, started)
    return await _replay(db, connection, started)


async def _replay(db: Database, connection: NatsClient, started: float) -> RebuildResult:
    js = connection.jetstream()
    info = await js.stream_info(ROLLBACK_STREAM.name)
    last_sequence = info.state.last_seq
    applied = skipped = messages = 0
    async with db.sessions() as session, session.begin():
        await _lock_view(session)
        await wipe(session)
        if info.state.messages > 0:
            subscription = await js.subscribe(
                "rollback.>",
                stream=ROLLBACK_STREAM.name,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
            )
            try:
                applied, skipped = await _replay_messages(session, subscription, last_sequence)
            finally:
                await subscription.unsubscribe()
            messages = applied + skipped
    result = RebuildResult(messages, applied, skipped, last_sequence, time.monotonic() - started)
    logger.info(
        "Rebuilt the stats view from %d messages (%d applied, %d skipped) in %.1f s.",
        result.messages,
        result.applied,
        result.skipped,
        result.seconds,
    )
    return result


async def _replay_messages(session: AsyncSession, subscription, last_sequence: int) -> tuple[int, int]:  # noqa: ANN001
    """Apply the stream's messages in batches up to ``last_sequence``; return (applied, skipped).

    Invalid messages are skipped, because the live consumer dead-lettered them when they came.
    """
    applied = skipped = 0
    batch: list[tuple[str, RollbackEvent]] = []
    done = False
    while not done:
        try:
            msg = await subscription.next_msg(timeout=NEXT_MESSAGE_TIMEOUT_SECONDS)
        except nats.errors.TimeoutError:
            logger.warning(
                "Replay stopped before sequence %d: no message came within %.0f s.",
                last_sequence,
                NEXT_MESSAGE_TIMEOUT_SECONDS,
            )
            msg = None
        done = msg is None or msg.metadata.sequence.stream >= last_sequence
        if msg is not None:
            try:
                batch.append((msg.subject, decode(msg.subject, JSON_OBJECT.validate_json(msg.data))))
            except (ValidationError, InvalidEvent, UnknownSubject):
                skipped += 1
        if batch and (done or len(batch) >= REPLAY_BATCH_SIZE):
            results = await apply_events(session, batch)
            applied += sum(1 for facts in results if facts is not None)
            skipped += sum(1 for facts in results if facts is None)
            batch = []
    return applied, skipped
