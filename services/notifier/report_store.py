"""Store incident reports: a Markdown file per plan, announced with ``IncidentReportStored``.

This is a delivery channel like Slack, so writing and publishing are retried and survive a
restart. The event id is derived from the plan id and what the report covers, so a retried
publish is dropped by JetStream's duplicate window and by consumers.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from faststream.nats import NatsBroker

from services.notifier import report
from services.notifier.models import Delivery
from services.notifier.repository import DeliveryStore
from services.notifier.retry import AttemptResult, RetryPolicy
from services.notifier.routing import Notification, NotifierEvent
from shared.bus import publish
from shared.contracts import IncidentReportStored
from shared.names import subject

MAX_MARKDOWN_LENGTH = 200_000


def report_path(directory: Path, plan_id: str) -> Path:
    """Return ``<directory>/<plan_id>.md``; raise ValueError unless ``plan_id`` is a UUID."""
    try:
        name = str(UUID(plan_id))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"invalid plan id {plan_id!r} for a report file: expected a UUID") from exc
    path = (directory / f"{name}.md").resolve()
    if path.parent != directory.resolve():
        raise ValueError(f"report path {path} is outside {directory}")
    return path


def report_event_id(plan_id: str, revision: str) -> UUID:
    """Return the deterministic event id of a plan's report revision."""
    return uuid.uuid5(UUID(plan_id), f"incident-report:{revision}")


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".md")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ReportChannel:
    """Renders, writes and announces the incident report of a finished plan."""

    name = "report"
    coalesces = False
    min_interval = 0.0
    kinds: frozenset = frozenset()

    def __init__(
        self,
        directory: Path,
        *,
        broker: NatsBroker,
        store: DeliveryStore,
        policy: RetryPolicy,
        publish_timeout: float,
    ) -> None:
        self.directory = directory
        self.policy = policy
        self._broker = broker
        self._store = store
        self._publish_timeout = publish_timeout

    def prepare(
        self, notification: Notification, history: Sequence[NotifierEvent]
    ) -> dict[str, Any] | None:
        """Return the report request; the report is rendered when it is delivered."""
        if notification.plan_id is None:
            return None
        return {"plan_id": str(notification.plan_id), "revision": notification.key}

    async def send(self, delivery: Delivery) -> AttemptResult:
        """Render the report from the stored events, write it and publish it."""
        request = json.loads(delivery.payload)
        plan_id = request["plan_id"]
        events = await self._store.plan_events(plan_id)
        markdown = report.render(UUID(plan_id), events)
        if markdown is None:
            return AttemptResult(422, error="the plan has no stored outcome, so no report")
        if len(markdown) > MAX_MARKDOWN_LENGTH:
            markdown = markdown[: MAX_MARKDOWN_LENGTH - 40] + "\n\n(report truncated)\n"
        try:
            path = report_path(self.directory, plan_id)
            await asyncio.to_thread(_write_atomically, path, markdown)
        except ValueError as exc:
            return AttemptResult(400, error=str(exc))
        except OSError as exc:
            return AttemptResult(None, error=f"writing the report failed: {exc}")
        stored = IncidentReportStored(
            event_id=report_event_id(plan_id, request["revision"]),
            plan_id=UUID(plan_id),
            environment=delivery.environment,
            service=delivery.service,
            markdown=markdown,
        )
        try:
            await publish(
                self._broker,
                subject("rollback.report", delivery.environment, delivery.service),
                stored,
                timeout=self._publish_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - any bus error is retried by the worker.
            return AttemptResult(None, error=f"publishing the report failed: {exc!r}")
        return AttemptResult(200, body=str(path))

    async def close(self) -> None:
        """Nothing to release."""
