"""Compose services into one process: bus, database, HTTP app and lifecycle.

``travi run SERVICE`` runs one service; ``travi up`` runs all five beside an embedded
nats-server and SQLite. Tests use :class:`Runtime` directly to run any subset in their own
event loop.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from faststream.specification import AsyncAPI
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from shared.auth import Authenticator
from shared.bus import declare_streams, make_broker
from shared.db import Database, open_database, upgrade
from shared.errors import Conflict, ConfigurationError, InvalidName, NotFound, TraviError
from shared.health import health_router
from shared.metrics import HTTP_REJECTED
from shared.service import Service, ServiceContext
from shared.settings import Settings
from shared.tracing import setup_tracing

logger = logging.getLogger(__name__)

SERVICE_NAMES = ("detector", "planner", "executor", "notifier", "stats")
VERSION = "0.1.0"
# Seconds the HTTP server waits for open requests to finish when the process stops.
SHUTDOWN_GRACE_SECONDS = 5.0


def service_factory(name: str) -> Callable[[ServiceContext], Service]:
    """Return the ``create`` function of the named service."""
    if name not in SERVICE_NAMES:
        raise ConfigurationError(f"unknown service {name!r}: use one of {', '.join(SERVICE_NAMES)}")
    return importlib.import_module(f"services.{name}.service").create


def migration_folders(names: Sequence[str]) -> list[Path]:
    """Return the migration folders of the named services."""
    return [Path(__file__).parent / name / "migrations" for name in names]


def migrate(settings: Settings, names: Sequence[str] = SERVICE_NAMES) -> None:
    """Bring the named services' tables up to date (blocking)."""
    upgrade(settings.resolved_database_url(), migration_folders(names))


def _error_handlers(app: FastAPI) -> None:
    statuses = {InvalidName: 400, NotFound: 404, Conflict: 409, ConfigurationError: 400}

    @app.exception_handler(TraviError)
    async def travi_error(_request: Request, exc: TraviError) -> JSONResponse:
        code = next((value for kind, value in statuses.items() if isinstance(exc, kind)), 400)
        body: dict[str, object] = {"detail": str(exc)}
        if isinstance(exc, InvalidName):
            body["field"] = exc.field
        return JSONResponse(body, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 body, which names each field at fault, plus the rejection count.
        HTTP_REJECTED.labels(reason="invalid_request").inc()
        return await request_validation_exception_handler(request, exc)


def build_app(context: ServiceContext, services: Sequence[Service]) -> FastAPI:
    """Build one HTTP app with health, metrics, API documents and every service's router."""
    app = FastAPI(title="TRAVI rollback system", version=VERSION)
    _error_handlers(app)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        # The dashboard must not be framed by another page, nor a response sniffed as HTML.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    async def bus_check() -> None:
        if not context.broker.connection.is_connected:
            raise ConnectionError("not connected to NATS")

    app.include_router(health_router({"database": context.db.ping, "bus": bus_check}))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    asyncapi = AsyncAPI(context.broker, title="TRAVI events", version=VERSION)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_document() -> Response:
        return Response(asyncapi.to_specification().to_json(), media_type="application/json")

    for service in services:
        if service.router is not None:
            app.include_router(service.router)
    return app


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror}): stop what uses it or set "
            "TRAVI_HTTP_PORT to another port (0 picks a free one)"
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Runtime:
    """The running parts of one process; start and stop them in order."""

    def __init__(
        self,
        settings: Settings,
        names: Sequence[str] = SERVICE_NAMES,
        *,
        tracer_provider: TracerProvider | None = None,
        extra_tokens: dict[str, str] | None = None,
        freeze_heap: bool = False,
    ) -> None:
        """With ``freeze_heap``, :meth:`start` freezes the objects of start-up out of the
        garbage collector's full collections, and :meth:`stop` unfreezes them."""
        if settings.nats_url is None:
            raise ConfigurationError("TRAVI_NATS_URL is not set: set it, or use 'travi up'")
        self.settings = settings
        self.names = list(names)
        self.tracer_provider = tracer_provider or setup_tracing(
            settings.trace_exporter,
            service_name="travi-" + "-".join(self.names) if len(self.names) < 5 else "travi",
            otlp_endpoint=settings.otlp_endpoint,
        )
        tokens = dict(settings.tokens)
        for token, role in (extra_tokens or {}).items():
            tokens[token] = SecretStr(role)
        self.auth = Authenticator(tokens)
        self.db: Database | None = None
        self.services: list[Service] = []
        self.context: ServiceContext | None = None
        self.app: FastAPI | None = None
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Task[None] | None = None
        self.port: int | None = None
        self._freeze_heap = freeze_heap

    @property
    def base_url(self) -> str:
        """The HTTP app's URL."""
        return f"http://{self.settings.http_host}:{self.port}"

    async def start(self) -> None:
        """Migrate, connect, register the services, start the broker and serve HTTP."""
        await asyncio.to_thread(migrate, self.settings, self.names)
        self.db = open_database(self.settings.resolved_database_url())
        broker = make_broker(self.settings.nats_url, tracer_provider=self.tracer_provider)
        self.context = ServiceContext(self.settings, broker, self.db, self.auth, self.tracer_provider)
        await broker.connect()
        await declare_streams(broker, self.settings)
        self.services = [service_factory(name)(self.context) for name in self.names]
        await broker.start()
        for service in self.services:
            await service.start()
        self.app = build_app(self.context, self.services)
        await self._serve_http()
        if self._freeze_heap:
            # A full collection walks every object: about 100 ms here with all five services,
            # and a breach that met one waited that long. Start-up objects live as long as the
            # process, so freezing them keeps nothing alive that would have been freed.
            gc.collect()
            gc.freeze()
        logger.info("Started %s; HTTP on %s.", ", ".join(self.names), self.base_url)

    async def _serve_http(self) -> None:
        sock = _listen(self.settings.http_host, self.settings.http_port)
        self.port = sock.getsockname()[1]
        # Without a bound, uvicorn waits at shutdown for every open connection to close, and a
        # client that keeps a request open would hold the whole process (and its SIGTERM) hostage.
        config = uvicorn.Config(
            self.app,
            log_config=None,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the caller owns the signals
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._server_task.done():
                await self._server_task
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop HTTP, the services, the broker and the database, in that order."""
        if self._server is not None and self._server_task is not None:
            self._server.should_exit = True
            await self._server_task
            self._server = None
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                logger.exception("Service %s failed to stop cleanly.", service.name)
        if self.context is not None:
            await self.context.broker.stop()
        if self.db is not None:
            await self.db.close()
        self.tracer_provider.shutdown()
        if self._freeze_heap:
            gc.unfreeze()
        logger.info("Stopped %s.", ", ".join(self.names))

    async def __aenter__(self) -> Runtime:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
