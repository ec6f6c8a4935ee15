"""``travi up`` and ``travi run``: run services until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Sequence

from opentelemetry import trace

from services.runner import SERVICE_NAMES, Runtime
from shared.auth import load_or_create_operator_token
from shared.client import RUNTIME_FILE
from shared.embedded import EmbeddedNats
from shared.settings import Settings
from shared.tracing import setup_tracing

logger = logging.getLogger(__name__)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _tracer(settings: Settings, name: str):  # noqa: ANN202 - TracerProvider
    provider = setup_tracing(settings.trace_exporter, service_name=name, otlp_endpoint=settings.otlp_endpoint)
    trace.set_tracer_provider(provider)
    return provider


async def run_services(settings: Settings, names: Sequence[str]) -> None:
    """Run the named services against the configured NATS and database until a signal."""
    runtime = Runtime(
        settings,
        names,
        tracer_provider=_tracer(settings, "travi-" + "-".join(names)),
        freeze_heap=True,
    )
    async with runtime:
        print(f"TRAVI {', '.join(names)} listening on {runtime.base_url}", flush=True)
        await _wait_for_signal()


async def up(settings: Settings) -> None:
    """Run all five services in one process, with an embedded nats-server if none is set."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    nats: EmbeddedNats | None = None
    if settings.nats_url is None:
        nats = EmbeddedNats(settings.state_dir / "nats")
        await asyncio.to_thread(nats.start)
        settings = settings.model_copy(update={"nats_url": nats.url})
    token, created = load_or_create_operator_token(settings.state_dir)
    runtime_file = settings.state_dir / RUNTIME_FILE
    try:
        runtime = Runtime(
            settings,
            SERVICE_NAMES,
            tracer_provider=_tracer(settings, "travi"),
            extra_tokens={token: "operator:operator"},
            freeze_heap=True,
        )
        async with runtime:
            runtime_file.write_text(
                json.dumps({"api_url": runtime.base_url, "nats_url": settings.nats_url, "pid": os.getpid()})
            )
            print(f"TRAVI is up: HTTP on {runtime.base_url}, NATS on {settings.nats_url}", flush=True)
            print(f"State folder: {settings.state_dir.resolve()}", flush=True)
            if created:
                print(f"Operator token (stored in {settings.state_dir / 'token'}): {token}", flush=True)
            else:
                print(f"Operator token: stored in {settings.state_dir / 'token'}", flush=True)
            await _wait_for_signal()
            print("Stopping TRAVI...", flush=True)
    finally:
        runtime_file.unlink(missing_ok=True)
        if nats is not None:
            await asyncio.to_thread(nats.stop)
