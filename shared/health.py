"""Health endpoints: ``/api/health``, ``/api/health/live`` and ``/api/health/ready``."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]

# Resident memory above which the memory check reports unhealthy, in MiB.
DEFAULT_MEMORY_LIMIT_MIB = 2048


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _run(check: Check, timeout: float) -> dict[str, object]:
    try:
        await asyncio.wait_for(check(), timeout)
    except Exception as exc:  # noqa: BLE001 - any failure makes the check unhealthy.
        return {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": "healthy"}


def health_router(checks: dict[str, Check], memory_limit_mib: float = DEFAULT_MEMORY_LIMIT_MIB) -> APIRouter:
    """Build the health routes over named checks; memory is always checked."""
    router = APIRouter(tags=["health"])

    async def report() -> tuple[bool, dict[str, object]]:
        names = list(checks)
        results = await asyncio.gather(*(_run(checks[name], 3.0) for name in names))
        body: dict[str, dict[str, object]] = dict(zip(names, results, strict=True))
        rss = _rss_mib()
        body["memory"] = {
            "status": "healthy" if rss < memory_limit_mib else "unhealthy",
            "rssMiB": round(rss, 1),
        }
        healthy = all(item["status"] == "healthy" for item in body.values())
        return healthy, {"status": "healthy" if healthy else "unhealthy", "checks": body}

    @router.get("/api/health")
    async def health() -> JSONResponse:
        healthy, body = await report()
        return JSONResponse(body, status_code=200 if healthy else 503)

    @router.get("/api/health/live")
    async def live() -> dict[str, str]:
        return {"status": "healthy"}

    @router.get("/api/health/ready")
    async def ready() -> JSONResponse:
        healthy, body = await report()
        return JSONResponse(body, status_code=200 if healthy else 503)

    return router
