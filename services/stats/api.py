"""HTTP routes of the stats service: statistics, plans, incident reports and the rebuild."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import PlainTextResponse

from shared.contracts import PlanStatus
from shared.names import validate_name
from shared.service import ServiceContext

from services.stats import store
from services.stats.rebuild import RebuildResult
from services.stats.views import plan_json, signal_json

MAX_PAGE = 500
# The largest offset SQLite and PostgreSQL accept (a signed 64-bit integer).
MAX_OFFSET = 2**63 - 1
# The latest accepted ``since``, because splitting a later one into days needs a day after
# 9999-12-31.
LATEST_SINCE = datetime(9999, 12, 31, tzinfo=UTC)
SignalKind = Literal["breach", "suppressed", "escalation", "notification_failed"]


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"invalid {field} {value.isoformat()!r}: give a time zone, such as "
            "2026-12-04T10:00:00Z",
        )
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or (field == "since" and in_utc > LATEST_SINCE):
        latest = "9999-12-31T00:00:00Z" if field == "since" else "9999-12-31T23:59:59Z"
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"invalid {field} {value.isoformat()!r}: give a time from 0001-01-01T00:00:00Z "
            f"to {latest} in UTC",
        )
    return value


def stats_filter(
    environment: str | None, service: str | None, since: datetime | None, until: datetime | None
) -> store.StatsFilter:
    """Validate the query parameters of a statistics request."""
    since = _aware(since, "since")
    until = _aware(until, "until")
    if since is not None and until is not None and until < since:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"invalid range: until {until.isoformat()} is before since {since.isoformat()}",
        )
    return store.StatsFilter(
        environment=validate_name(environment, "environment") if environment is not None else None,
        service=validate_name(service, "service") if service is not None else None,
        since=since,
        until=until,
    )


def build_router(
    context: ServiceContext, run_rebuild: Callable[[], Coroutine[Any, Any, RebuildResult]]
) -> APIRouter:
    """Return the admin API routes; reads need the viewer role, the rebuild the operator role."""
    router = APIRouter(tags=["stats"])
    viewer = context.auth.require("viewer")
    operator = context.auth.require("operator")
    sessions = context.db.sessions

    @router.get("/api/admin/rollback/stats", dependencies=[viewer])
    async def get_stats(
        environment: str | None = None,
        service: str | None = None,
        since: datetime | None = Query(None, description="Plans created at or after, ISO 8601."),
        until: datetime | None = Query(None, description="Plans created before, ISO 8601."),
    ) -> dict[str, object]:
        """Return counts, success rate, average duration and triggers of the matching plans."""
        scope = stats_filter(environment, service, since, until)
        async with sessions() as session:
            return await store.load_stats(session, scope)

    @router.post("/api/admin/rollback/stats/rebuild", dependencies=[operator])
    async def post_rebuild() -> dict[str, object]:
        """Wipe the statistics view and replay it from the rollback stream."""
        result = await run_rebuild()
        return {
            "messages": result.messages,
            "applied": result.applied,
            "skipped": result.skipped,
            "lastSequence": result.last_sequence,
            "seconds": round(result.seconds, 3),
        }

    @router.get("/api/admin/rollbacks", dependencies=[viewer])
    async def list_rollbacks(
        environment: str | None = None,
        service: str | None = None,
        status_filter: PlanStatus | None = Query(None, alias="status"),
        limit: int = Query(50, ge=1, le=MAX_PAGE, description="Plans per page."),
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Plans to skip, newest first."),
        steps: bool = Query(False, description="Include each plan's steps."),
    ) -> dict[str, object]:
        """List one page of plans, newest first, with the number of plans that match."""
        scope = stats_filter(environment, service, None, None)
        query = store.PlanFilter(scope.environment, scope.service, status_filter, limit, offset)
        async with sessions() as session:
            plans, total = await store.list_plans(session, query)
            ids = [plan.id for plan in plans]
            plan_steps = await store.steps_of(session, ids) if steps else {}
            with_report = await store.reports_available(session, ids)
        items = []
        for plan in plans:
            item = plan_json(plan, plan_steps.get(plan.id, []), report_available=plan.id in with_report)
            if not steps:
                del item["steps"]
            items.append(item)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @router.get("/api/admin/signals", dependencies=[viewer])
    async def list_signals(
        kind: SignalKind | None = Query(None, description="Only signals of this kind."),
        environment: str | None = None,
        service: str | None = None,
        since: datetime | None = Query(None, description="Signals at or after, ISO 8601."),
        until: datetime | None = Query(None, description="Signals before, ISO 8601."),
        limit: int = Query(50, ge=1, le=MAX_PAGE, description="Signals per page."),
        offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Signals to skip, newest first."),
    ) -> dict[str, object]:
        """List breaches, suppressions, escalations and notification failures, newest first.

        A suppression gives the reason a breach did not become a rollback.
        """
        query = store.SignalFilter(
            kind, stats_filter(environment, service, since, until), limit, offset
        )
        async with sessions() as session:
            signals, total = await store.list_signals(session, query)
        return {
            "items": [signal_json(signal) for signal in signals],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @router.get("/api/admin/rollbacks/{plan_id}", dependencies=[viewer])
    async def get_rollback(plan_id: UUID) -> dict[str, object]:
        """Return one plan with its steps, their durations and the breach that caused it."""
        async with sessions() as session:
            plan = await store.get_plan(session, str(plan_id))
            if plan is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"rollback plan {plan_id} not found")
            steps = (await store.steps_of(session, [plan.id]))[plan.id]
            with_report = await store.reports_available(session, [plan.id])
        return plan_json(plan, steps, report_available=plan.id in with_report)

    @router.get(
        "/api/admin/rollbacks/{plan_id}/incident-report",
        dependencies=[viewer],
        response_class=PlainTextResponse,
    )
    async def get_incident_report(plan_id: UUID) -> PlainTextResponse:
        """Return the plan's incident report as markdown."""
        async with sessions() as session:
            report = await store.get_report(session, str(plan_id))
            plan = await store.get_plan(session, str(plan_id)) if report is None else None
        if report is not None:
            return PlainTextResponse(report.markdown, media_type="text/markdown; charset=utf-8")
        if plan is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"rollback plan {plan_id} not found")
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no incident report for rollback plan {plan_id} yet: the notifier writes it after "
            f"the plan finishes (status now: {plan.status})",
        )

    return router
