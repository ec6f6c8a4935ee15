"""HTTP routes of the notifier: the delivery log, for finding out why a message did not arrive."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy import select

from services.notifier.models import Delivery
from shared.service import ServiceContext

MAX_LIMIT = 500


def _time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def delivery_json(row: Delivery) -> dict[str, object]:
    """Return one delivery-log row as camelCase JSON, without its payload."""
    return {
        "id": row.id,
        "channel": row.channel,
        "planId": None if row.plan_key == "-" else row.plan_key,
        "environment": row.environment,
        "service": row.service,
        "kind": row.kind,
        "sourceEventId": row.source_event_id,
        "status": row.status,
        "attempts": row.attempts,
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "createdAt": _time(row.created_at),
        "nextAttemptAt": _time(row.next_attempt_at) if row.status == "pending" else None,
        "finishedAt": _time(row.finished_at),
    }


def build_router(context: ServiceContext) -> APIRouter:
    """Return the notifier's admin routes; reading the delivery log needs the viewer role."""
    router = APIRouter(tags=["notifier"])
    viewer = context.auth.require("viewer")

    @router.get("/api/admin/notifications", dependencies=[viewer])
    async def list_deliveries(
        plan_id: UUID | None = Query(None, alias="planId", description="Only the deliveries of this plan."),
        status: Literal["pending", "sent", "failed", "superseded"] | None = Query(
            None, description="Only deliveries with this status."
        ),
        limit: int = Query(100, ge=1, le=MAX_LIMIT, description="Deliveries returned, newest first."),
    ) -> dict[str, object]:
        """Return the newest deliveries of every channel, with their last error."""
        query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
        if plan_id is not None:
            query = query.where(Delivery.plan_key == str(plan_id))
        if status is not None:
            query = query.where(Delivery.status == status)
        async with context.db.sessions() as session:
            rows = await session.scalars(query)
            return {"deliveries": [delivery_json(row) for row in rows]}

    return router
