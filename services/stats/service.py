"""Wiring of the stats service: subscribers, HTTP routes and lifecycle hooks."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from shared.service import Service, ServiceContext

from services.stats.api import build_router
from services.stats.consumer import EventApplier, register_consumers
from services.stats.dashboard import dashboard_router
from services.stats.rebuild import RebuildResult, rebuild

MIGRATIONS = Path(__file__).with_name("migrations")


def create(context: ServiceContext) -> Service:
    """Register the stats subscribers on the broker and return the service."""
    applier = EventApplier(context.db)
    register_consumers(context.broker, applier)

    async def run_rebuild() -> RebuildResult:
        return await rebuild(context.db, context.broker.connection, applier)

    router = APIRouter()
    router.include_router(build_router(context, run_rebuild))
    router.include_router(dashboard_router(context))
    return Service(name="stats", migrations=MIGRATIONS, router=router)
