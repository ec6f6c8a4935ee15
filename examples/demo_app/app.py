"""The demo service: one release of a small FastAPI app, reporting every request to TRAVI.

``GET /`` is the service's work; it returns status 500 for the release's ``error_share`` of
requests, chosen at random. ``GET /health`` returns the running version. Every request except the
health check is reported through the project's ASGI middleware to ``metrics.<env>.<svc>``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from examples.demo_app.releases import read_release
from shared.asgi_metrics import MetricsMiddleware
from shared.reporter import MetricsReporter, NatsTransport

# The demo reports often so that the detector has a bad version's requests within a second.
FLUSH_INTERVAL_SECONDS = 0.1


def build_app(version: str, error_share: float, rng: random.Random) -> FastAPI:
    """Create the app of one release."""
    app = FastAPI(title=f"demo checkout {version}")

    @app.get("/")
    async def checkout() -> JSONResponse:
        if rng.random() < error_share:
            return JSONResponse({"error": "payment backend failed", "version": version}, status_code=500)
        return JSONResponse({"status": "ok", "version": version})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "version": version}

    return app


async def serve(args: argparse.Namespace) -> None:
    """Serve the release until SIGTERM, reporting requests when a NATS URL is given."""
    release = read_release(Path(args.release))
    version = str(release["version"])
    app = build_app(version, float(release["error_share"]), random.Random())
    reporter: MetricsReporter | None = None
    if args.nats_url:
        transport = await NatsTransport.connect(args.nats_url)
        reporter = MetricsReporter(
            transport, service=args.service, environment=args.environment, version=version,
            flush_interval=FLUSH_INTERVAL_SECONDS,
        )
        app.add_middleware(MetricsMiddleware, reporter=reporter, exclude_paths=("/health",))
        await reporter.start()
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
    try:
        await server.serve()
    finally:
        if reporter is not None:
            await reporter.stop()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", required=True, help="The release folder to serve.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", default="checkout")
    parser.add_argument("--environment", default="production")
    parser.add_argument("--nats-url", default=None)
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
