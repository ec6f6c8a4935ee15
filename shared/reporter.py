"""The producer SDK: report observations of a service to TRAVI without slowing the service down.

A :class:`MetricsReporter` keeps observations in a bounded buffer and a background task
publishes them in batches (a :class:`~shared.contracts.MetricsReported` body) on
``metrics.<env>.<svc>``, through NATS JetStream (:class:`NatsTransport`) or the HTTP API
(:class:`HttpTransport`). The ``report_*`` methods never wait. When the buffer is full the
observation is dropped and counted, and a batch that cannot be sent is dropped and counted too.
So a TRAVI outage costs the service memory for ``max_buffer`` observations and nothing more.
Use it from the thread that runs its event loop::

    reporter = MetricsReporter(
        await NatsTransport.connect("nats://127.0.0.1:4222"),
        service="checkout", environment="production", version="v1.2.0",
    )
    async with reporter:
        reporter.report_request(120.5, status=200)

:mod:`shared.asgi_metrics` reports every request of a Starlette or FastAPI app with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import nats
import orjson

from shared.names import subject, validate_name, validate_version

logger = logging.getLogger(__name__)

FAILURE_LOG_INTERVAL = 30.0  # seconds between two warnings about failed sends


class Transport(Protocol):
    """Destination of the batches: JetStream or the HTTP API."""

    async def send(self, subject: str, body: bytes, event_id: str) -> None:
        """Deliver one batch or raise."""

    async def close(self) -> None:
        """Release the connection."""


class NatsTransport:
    """Publishes batches to JetStream, with ``Nats-Msg-Id`` so a retried batch is stored once."""

    def __init__(self, connection: nats.NATS, *, timeout: float = 5.0, owned: bool = False) -> None:
        self._connection = connection
        self._js = connection.jetstream()
        self._timeout = timeout
        self._owned = owned

    @classmethod
    async def connect(cls, url: str, *, timeout: float = 5.0) -> NatsTransport:
        """Open a connection of its own to ``url``; :meth:`close` closes it."""
        connection = await nats.connect(url, name="travi-reporter", max_reconnect_attempts=-1)
        return cls(connection, timeout=timeout, owned=True)

    async def send(self, subject: str, body: bytes, event_id: str) -> None:
        headers = {"Nats-Msg-Id": event_id}
        await self._js.publish(subject, body, timeout=self._timeout, headers=headers)

    async def close(self) -> None:
        if self._owned:
            await self._connection.close()


class HttpTransport:
    """Posts batches to ``POST /api/metrics`` with a producer token."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 5.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout,
        )

    async def send(self, subject: str, body: bytes, event_id: str) -> None:
        response = await self._client.post("/api/metrics", content=body)
        response.raise_for_status()

    async def close(self) -> None:
        await self._client.aclose()


@dataclass
class ReporterStats:
    """Counts of what happened to reported observations."""

    reported: int = 0  # accepted into the buffer
    published: int = 0  # sent in a batch that the transport accepted
    dropped: int = 0  # not buffered because the buffer was full
    failed: int = 0  # in a batch the transport could not send
    invalid: int = 0  # NaN, infinite or negative values, never buffered


class MetricsReporter:
    """Buffers observations of one version of one service and publishes them in batches."""

    def __init__(
        self,
        transport: Transport,
        *,
        service: str,
        environment: str,
        version: str,
        max_batch: int = 1000,
        flush_interval: float = 0.5,
        max_buffer: int = 10_000,
    ) -> None:
        if not 1 <= max_batch <= 10_000:
            raise ValueError(f"invalid max_batch {max_batch}: use 1 to 10000 observations")
        if max_buffer < max_batch:
            raise ValueError(
                f"invalid max_buffer {max_buffer}: use at least max_batch ({max_batch})"
            )
        self._transport = transport
        self._envelope = {
            "service": validate_name(service, "service"),
            "environment": validate_name(environment, "environment"),
            "version": validate_version(version),
        }
        self._subject = subject("metrics", environment, service)
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.stats = ReporterStats()
        self._buffer: deque[tuple[Any, ...]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_failure_log = -math.inf

    def report_request(
        self,
        latency_ms: float,
        *,
        status: int | None = None,
        ok: bool | None = None,
        timed_out: bool = False,
        at: float | None = None,
    ) -> bool:
        """Buffer one served request (``at``: epoch seconds, default now); False if dropped."""
        if not (0.0 <= latency_ms < math.inf):
            self.stats.invalid += 1
            return False
        return self._put(("request", at, float(latency_ms), status, ok, timed_out))

    def report_health_check(
        self, check: str, ok: bool, *, check_id: str | None = None, at: float | None = None
    ) -> bool:
        """Buffer one health-check result; False if dropped."""
        return self._put(("health_check", at, check, ok, check_id))

    def report_budget(self, spent: float, budget: float, *, at: float | None = None) -> bool:
        """Buffer the AI spend against its budget; False if dropped."""
        if not (0.0 <= spent < math.inf and 0.0 < budget < math.inf):
            self.stats.invalid += 1
            return False
        return self._put(("budget", at, float(spent), float(budget)))

    def _put(self, item: tuple[Any, ...]) -> bool:
        if len(self._buffer) >= self.max_buffer:
            self.stats.dropped += 1
            return False
        if item[1] is None:
            item = (item[0], time.time(), *item[2:])
        self._buffer.append(item)
        self.stats.reported += 1
        if len(self._buffer) >= self.max_batch:
            self._wake.set()
        return True

    @property
    def pending(self) -> int:
        """Observations waiting in the buffer."""
        return len(self._buffer)

    async def start(self) -> None:
        """Start the background task that publishes batches."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="travi-reporter")

    async def stop(self, *, flush: bool = True) -> None:
        """Stop publishing; with ``flush``, send what is buffered first. Closes the transport."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if flush:
            await self.flush()
        await self._transport.close()

    async def flush(self) -> None:
        """Send every buffered observation now, in batches of at most ``max_batch``."""
        while self._buffer:
            await self._send_batch()

    async def __aenter__(self) -> MetricsReporter:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            while self._buffer:
                await self._send_batch()
                if len(self._buffer) < self.max_batch:
                    break

    async def _send_batch(self) -> None:
        items = [self._buffer.popleft() for _ in range(min(self.max_batch, len(self._buffer)))]
        event_id = str(uuid.uuid4())
        observations = [_observation(item) for item in items]
        body = orjson.dumps({**self._envelope, "event_id": event_id, "observations": observations})
        try:
            await self._transport.send(self._subject, body, event_id)
        except Exception as exc:  # noqa: BLE001 - a TRAVI outage must never break the service.
            self.stats.failed += len(items)
            now = time.monotonic()
            if now - self._last_failure_log >= FAILURE_LOG_INTERVAL:
                self._last_failure_log = now
                logger.warning(
                    "Sending %d observations to %s failed (%r); they are dropped. %d dropped "
                    "so far.", len(items), self._subject, exc, self.stats.failed,
                )
            return
        self.stats.published += len(items)


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _observation(item: tuple[Any, ...]) -> dict[str, Any]:
    kind = item[0]
    if kind == "request":
        _, at, latency, status, ok, timed_out = item
        observation: dict[str, Any] = {"kind": kind, "at": _timestamp(at), "latency_ms": latency}
        if status is not None:
            observation["status"] = status
        if ok is not None:
            observation["ok"] = ok
        if timed_out:
            observation["timed_out"] = True
        return observation
    if kind == "health_check":
        _, at, check, ok, check_id = item
        observation = {"kind": kind, "at": _timestamp(at), "check": check, "ok": ok}
        if check_id is not None:
            observation["check_id"] = check_id
        return observation
    _, at, spent, budget = item
    return {"kind": kind, "at": _timestamp(at), "spent": spent, "budget": budget}
