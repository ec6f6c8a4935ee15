"""Deletion of notifier rows that no redelivery can need any more.

An event older than the rollback stream's retention can no longer be delivered again, so its
inbox row, its stored copy and its finished deliveries may go. A day is added to the
retention as a margin for clock differences between hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from services.notifier.repository import DeliveryStore

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0
MARGIN_SECONDS = 86400.0


class Pruner:
    """Background task that prunes old rows at start-up and then every hour."""

    def __init__(self, store: DeliveryStore, retention_seconds: float) -> None:
        self._store = store
        self._retention_seconds = retention_seconds + MARGIN_SECONDS
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the pruning task."""
        self._task = asyncio.create_task(self._run(), name="notifier-pruner")

    async def stop(self) -> None:
        """Cancel the pruning task."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def prune_once(self) -> int:
        """Delete the rows older than the retention; return how many went."""
        deleted = await self._store.prune(time.time() - self._retention_seconds)
        if deleted:
            logger.info("Pruned %d notifier rows older than the stream's retention.", deleted)
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                logger.exception(
                    "Pruning old notifier rows failed; retrying in %.0f s.", PRUNE_INTERVAL_SECONDS
                )
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
