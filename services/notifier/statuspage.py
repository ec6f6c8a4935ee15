"""Atlassian Statuspage (REST API v1): one incident per rollback plan.

A started rollback opens an incident with the service's component at ``degraded_performance``.
A completed one resolves it and sets the component ``operational``. A failed or cancelled one
posts an update and leaves the incident open for people to resolve. The incident id is stored
per plan, so a repeated message updates the same incident, and an update that the stored
incident already has is not sent again. Text on the public page never contains error details.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from services.notifier.channels import redact, transport_error
from services.notifier.models import Delivery
from services.notifier.repository import DeliveryStore
from services.notifier.retry import AttemptResult, RetryPolicy, Verdict
from services.notifier.routing import Notification, NotifierEvent, component_for
from shared.contracts import ExecutePlan, PlanFinished
from shared.errors import ConfigurationError
from shared.settings import NotificationKind

# Page and incident ids go into request paths; Statuspage's are short alphanumeric strings.
PATH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

DEGRADED = "degraded_performance"
OPERATIONAL = "operational"


def incident_intent(notification: Notification, component_id: str) -> dict[str, Any] | None:
    """Return what the status page should show for ``notification``, or None for nothing."""
    event = notification.event
    service = notification.service
    base = {
        "plan_id": str(notification.plan_id),
        "component_id": component_id,
        "name": f"Degraded service: {service} ({notification.environment})",
    }
    if isinstance(event, ExecutePlan):
        return {
            **base,
            "status": "identified",
            "component_status": DEGRADED,
            "body": f"We identified a problem with {service} after a recent change and are "
            "rolling the change back.",
        }
    if not isinstance(event, PlanFinished):
        return None
    if event.outcome == "completed":
        return {
            **base,
            "status": "resolved",
            "component_status": OPERATIONAL,
            "body": f"The change has been rolled back and {service} is working normally again.",
        }
    body = {
        "failed": f"The automatic rollback of {service} did not complete. Our engineers are "
        "working on it.",
        "cancelled": f"The rollback of {service} was stopped. Our engineers are working on it.",
    }[event.outcome]
    return {**base, "status": "identified", "component_status": DEGRADED, "body": body}


class StatuspageChannel:
    """Creates and updates incidents through the Statuspage API."""

    name = "statuspage"
    coalesces = False

    def __init__(
        self,
        api_url: str,
        page_id: str,
        api_key: SecretStr,
        *,
        components: dict[str, str],
        kinds: Collection[NotificationKind],
        min_interval: float,
        timeout: float,
        policy: RetryPolicy,
        store: DeliveryStore,
    ) -> None:
        if not PATH_ID.match(page_id):
            raise ConfigurationError(
                f"invalid TRAVI_NOTIFIER__STATUSPAGE_PAGE_ID {page_id!r}: use the page id from "
                "the Statuspage API page (letters, digits, '-' and '_')"
            )
        self.page_id = page_id
        self._api_key = api_key
        self.components = dict(components)
        self.kinds = frozenset(kinds)
        self.min_interval = min_interval
        self.policy = policy
        self._store = store
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"OAuth {api_key.get_secret_value()}"},
            timeout=timeout,
        )

    def prepare(
        self, notification: Notification, history: Sequence[NotifierEvent]
    ) -> dict[str, Any] | None:
        """Return the incident intent; None when the service has no component on the page."""
        if notification.plan_id is None:
            return None
        component_id = component_for(
            self.components, notification.environment, notification.service
        )
        if component_id is None:
            return None
        return incident_intent(notification, component_id)

    async def send(self, delivery: Delivery) -> AttemptResult:
        """Create the plan's incident, or update the one stored for it."""
        intent = json.loads(delivery.payload)
        incident = await self._store.incident(intent["plan_id"])
        if incident is not None and (
            incident.status == "resolved" or incident.last_kind == delivery.kind
        ):
            # Resolved incidents are left alone, and a repeat of the last update is not sent.
            return AttemptResult(200, body=f"incident already {incident.status}")
        document = {
            "incident": {
                "status": intent["status"],
                "body": intent["body"],
                "component_ids": [intent["component_id"]],
                "components": {intent["component_id"]: intent["component_status"]},
            }
        }
        if incident is None:
            document["incident"]["name"] = intent["name"]
            result = await self._request("POST", f"/pages/{self.page_id}/incidents", document)
            incident_id = result.data.get("id")
            if result.verdict is Verdict.DELIVERED and incident_id and PATH_ID.match(incident_id):
                # NOTE: if the process dies between the response and this write, the retry
                # opens a second incident for the plan; Statuspage has no idempotency key.
                await self._store.save_incident(
                    intent["plan_id"], incident_id, intent["status"], delivery.kind
                )
            return result
        if not PATH_ID.match(incident.incident_id):
            error = f"stored incident id {incident.incident_id!r} is invalid"
            return AttemptResult(400, error=error)
        path = f"/pages/{self.page_id}/incidents/{incident.incident_id}"
        result = await self._request("PATCH", path, document)
        if result.verdict is Verdict.DELIVERED:
            await self._store.save_incident(
                intent["plan_id"], incident.incident_id, intent["status"], delivery.kind
            )
        return result

    async def _request(self, method: str, path: str, document: dict[str, Any]) -> AttemptResult:
        try:
            response = await self._http.request(method, path, json=document)
        except httpx.HTTPError as exc:
            return transport_error(exc, [self._api_key])
        data: dict[str, str] = {}
        if response.is_success:
            try:
                incident_id = response.json().get("id")
            except (ValueError, AttributeError):
                incident_id = None
            if isinstance(incident_id, str):
                data["id"] = incident_id
        return AttemptResult(
            response.status_code,
            headers=dict(response.headers),
            body=redact(response.text[:2000], [self._api_key]),
            data=data,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
