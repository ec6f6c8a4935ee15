"""ASGI middleware that reports every HTTP request of an app to a :class:`MetricsReporter`.

Works with any ASGI app, Starlette and FastAPI included::

    app.add_middleware(MetricsMiddleware, reporter=reporter)

The latency runs from the request's arrival until the app has sent the whole response. An
exception that escapes the app is reported as status 500 and raised again; a request cancelled
because the client went away is not reported. Paths in ``exclude_paths`` (health checks and the
Prometheus endpoint by default) are not reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from shared.reporter import MetricsReporter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_EXCLUDED = ("/metrics", "/api/health", "/api/health/live", "/api/health/ready")


class MetricsMiddleware:
    """Reports the latency and status of each HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        reporter: MetricsReporter,
        *,
        exclude_paths: Iterable[str] = DEFAULT_EXCLUDED,
    ) -> None:
        self.app = app
        self.reporter = reporter
        self.exclude_paths = frozenset(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exclude_paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._report(started, 500)
            raise
        self._report(started, status if status is not None else 500)

    def _report(self, started: float, status: int) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        self.reporter.report_request(latency_ms, status=status)
