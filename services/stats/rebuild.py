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
from services.stats.store import apply_event, wipe

logger = logging.getLogger(__name__)

JSON_OBJECT = TypeAdapter(dict)
# How long the replay waits for the next message before it concludes the stream has no more.
NEXT_MESSAGE_TIMEOUT_SECONDS = 5.0


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
    messages = applied = skipped = 0
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
                while True:
                    try:
                        msg = await subscription.next_msg(timeout=NEXT_MESSAGE_TIMEOUT_SECONDS)
                    except nats.errors.TimeoutError:
                        logger.warning(
                            "Replay stopped before sequence %d: no message came within %.0f s.",
                            last_sequence,
                            NEXT_MESSAGE_TIMEOUT_SECONDS,
                        )
                        break
                    messages += 1
                    if await _apply_message(session, msg.subject, msg.data):
                        applied += 1
                    else:
                        skipped += 1
                    if msg.metadata.sequence.stream >= last_sequence:
                        break
            finally:
                await subscription.unsubscribe()
    result = RebuildResult(messages, applied, skipped, last_sequence, time.monotonic() - started)
    logger.info(
        "Rebuilt the stats view from %d messages (%d applied, %d skipped) in %.1f s.",
        result.messages,
        result.applied,
        result.skipped,
        result.seconds,
    )
    return result


async def _apply_message(session: AsyncSession, subject: str, data: bytes) -> bool:
    """Apply one replayed message; invalid ones were dead-lettered when they first came."""
    try:
        event = decode(subject, JSON_OBJECT.validate_json(data))
    except (ValidationError, InvalidEvent, UnknownSubject):
        return False
    return await apply_event(session, subject, event) is not None
