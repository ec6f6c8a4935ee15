"""Wiring of the planner service: subscribers, HTTP routes and lifecycle hooks."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from shared.service import Service, ServiceContext

MIGRATIONS = Path(__file__).with_name("migrations")


def create(context: ServiceContext) -> Service:
    """Register the planner subscribers on the broker and return the service."""
    router = APIRouter(tags=["planner"])
    return Service(name="planner", migrations=MIGRATIONS, router=router)
