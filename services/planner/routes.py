"""HTTP routes of the planner: deployment records and manual rollbacks.

Listing and showing plans (``GET /api/admin/rollbacks``) belongs to the stats service, which
builds its view from the events; these routes only change state.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, status
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.planner.errors import PlannerError, RollbackRejected
from services.planner.models import Plan
from services.planner.planning import ManualRollback, Planner
from shared.auth import Authenticator, Principal
from shared.contracts import DeploymentRecorded, DeploymentStatus, UtcDatetime, utc_now
from shared.names import Name, Version, subject

REJECTED_REQUESTS = Counter(
    "travi_planner_rejected_requests_total",
    "Manual rollback and plan requests the planner rejected, by field at fault.",
    ["field"],
)


def _without_nul(value: str) -> str:
    # PostgreSQL text columns cannot store NUL, so it would fail the insert with a 500.
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000): remove it")
    return value


# Free text that is stored: any characters but NUL.
Text = Annotated[str, AfterValidator(_without_nul)]


class _Request(BaseModel):
    """Request bodies take camelCase names, and snake_case names too."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )


class DeploymentRequest(_Request):
    """A deployment record sent over HTTP; the actor defaults to the token's name."""

    service: Name
    environment: Name
    version: Version
    status: DeploymentStatus = "succeeded"
    actor: Text | None = Field(None, min_length=1, max_length=200)
    deployed_at: UtcDatetime | None = None


class RollbackRequest(_Request):
    """An operator's request for a manual rollback plan."""

    service: Name
    environment: Name
    target_version: Version
    from_version: Version | None = None
    reason: Text = Field("", max_length=2000)
    force: bool = False


class CancelRequest(_Request):
    """An optional reason for cancelling a plan."""

    reason: Text = Field("", max_length=2000)


def plan_json(plan: Plan) -> dict[str, Any]:
    """Return a plan as the API shows it, in camelCase."""

    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": plan.id,
        "environment": plan.environment,
        "service": plan.service,
        "fromVersion": plan.from_version,
        "toVersion": plan.to_version,
        "status": plan.status,
        "trigger": plan.trigger,
        "triggerType": plan.trigger_type,
        "actor": plan.actor,
        "reason": plan.reason,
        "forced": plan.forced,
        "createdAt": when(plan.created_at),
        "startedAt": when(plan.started_at),
        "finishedAt": when(plan.finished_at),
        "cancelRequestedAt": when(plan.cancel_requested_at),
    }


def error_response(exc: PlannerError) -> JSONResponse:
    """Return the JSON error of a rejected request, naming the field when one is at fault."""
    body: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, RollbackRejected):
        body["field"] = exc.field
        REJECTED_REQUESTS.labels(field=exc.field).inc()
    else:
        REJECTED_REQUESTS.labels(field="plan").inc()
    return JSONResponse(body, status_code=exc.status_code)


def build_router(planner: Planner, auth: Authenticator) -> APIRouter:
    """Build the planner's routes over ``planner``, guarded by ``auth``."""
    router = APIRouter(tags=["planner"])

    @router.post(
        "/api/admin/deployments", status_code=status.HTTP_202_ACCEPTED, response_model=None
    )
    async def record_deployment(
        body: DeploymentRequest, principal: Principal = auth.require("producer")
    ) -> dict[str, Any] | JSONResponse:
        """Record a deployment and publish it on ``deployments.<env>.<svc>``."""
        record = DeploymentRecorded(
            environment=body.environment,
            service=body.service,
            version=body.version,
            status=body.status,
            actor=body.actor or principal.name,
            deployed_at=body.deployed_at or utc_now(),
        )
        deployment_subject = subject("deployments", record.environment, record.service)
        try:
            await planner.record_deployment(record, deployment_subject, publish=True)
        except PlannerError as exc:
            return error_response(exc)
        return {
            "eventId": str(record.event_id),
            "environment": record.environment,
            "service": record.service,
            "version": record.version,
            "status": record.status,
            "actor": record.actor,
            "deployedAt": record.deployed_at.isoformat(),
        }

    @router.post("/api/admin/rollbacks", status_code=status.HTTP_201_CREATED, response_model=None)
    async def create_rollback(
        body: RollbackRequest, principal: Principal = auth.require("operator")
    ) -> dict[str, Any] | JSONResponse:
        """Create a pending manual rollback plan; it runs on ``/execute``."""
        request = ManualRollback(
            environment=body.environment,
            service=body.service,
            target_version=body.target_version,
            from_version=body.from_version,
            reason=body.reason,
            force=body.force,
        )
        try:
            plan = await planner.create_manual_plan(request, principal.name)
        except PlannerError as exc:
            return error_response(exc)
        return plan_json(plan)

    @router.post(
        "/api/admin/rollbacks/{plan_id}/execute",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=None,
    )
    async def execute_rollback(
        plan_id: UUID, principal: Principal = auth.require("operator")
    ) -> dict[str, Any] | JSONResponse:
        """Send the execute command of a pending plan."""
        try:
            plan = await planner.execute_plan(plan_id, principal.name)
        except PlannerError as exc:
            return error_response(exc)
        return plan_json(plan)

    @router.post(
        "/api/admin/rollbacks/{plan_id}/cancel",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=None,
    )
    async def cancel_rollback(
        plan_id: UUID,
        body: CancelRequest | None = Body(None),
        principal: Principal = auth.require("operator"),
    ) -> dict[str, Any] | JSONResponse:
        """Send the cancel command of a pending or running plan; the executor reports the end."""
        reason = body.reason if body is not None else ""
        try:
            plan = await planner.cancel_plan(plan_id, principal.name, reason)
        except PlannerError as exc:
            return error_response(exc)
        return plan_json(plan)

    return router
