"""Wiring of the executor service: subscribers, HTTP routes and lifecycle hooks."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from shared.service import Service, ServiceContext

MIGRATIONS = Path(__file__).with_name("migrations")


def create(context: ServiceContext) -> Service:
    """Register the executor subscribers on the broker and return the service."""
    router = APIRouter(tags=["executor"])
    return Service(name="executor", migrations=MIGRATIONS, router=router)
