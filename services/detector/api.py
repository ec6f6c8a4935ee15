"""HTTP routes of the detector: metrics from producers without NATS, alert webhooks, windows."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from faststream.nats import NatsBroker
from pydantic import ValidationError

from services.detector.alerts import (
    AlertmanagerPayload,
    GrafanaPayload,
    alert_breaches,
    describe_skipped,
)
from services.detector.metrics import OBSERVATIONS_REJECTED
from services.detector.observations import INVALID_JSON, load_json, parse_document
from services.detector.publisher import BreachPublisher
from services.detector.triggers import Detector
from shared.auth import Authenticator
from shared.bus import METRICS_STREAM
from shared.metrics import HTTP_REJECTED
from shared.names import subject
from shared.settings import Settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 5_000_000


def build_router(
    settings: Settings,
    auth: Authenticator,
    broker: NatsBroker,
    publisher: BreachPublisher,
    detector: Detector,
) -> APIRouter:
    """Return the detector's routes."""
    router = APIRouter(tags=["detector"])

    @router.post("/api/metrics", status_code=202, dependencies=[auth.require("producer")])
    async def post_metrics(request: Request) -> JSONResponse:
        """Validate metric events and publish the valid observations to metrics.<env>.<svc>."""
        body = await read_body(request)
        if body is None:
            return _body_too_large("send smaller batches")
        try:
            document = load_json(body)
        except (ValueError, UnicodeDecodeError) as exc:
            OBSERVATIONS_REJECTED.labels(reason=INVALID_JSON).inc()
            return _error(400, f"invalid JSON: {exc}", "invalid_json")

        parsed = parse_document(
            document,
            subject_environment=None,
            subject_service=None,
            now=time.time(),
            max_clock_skew=settings.detector.max_clock_skew_seconds,
        )
        errors = [
            {"field": r.describe().partition(":")[0], "reason": r.reason, "message": r.message}
            for r in parsed.rejections
        ]

        if parsed.accepted == 0:
            for rejection in parsed.rejections:
                OBSERVATIONS_REJECTED.labels(reason=rejection.reason).inc()
            HTTP_REJECTED.labels(reason="invalid_metrics").inc()
            return JSONResponse(
                {"detail": "no valid observation: fix the fields listed in errors",
                 "errors": errors},
                status_code=422,
            )

        target = subject("metrics", parsed.environment, parsed.service)
        message = _valid_part(document, parsed)
        headers = {"Nats-Msg-Id": str(document["event_id"])} if document.get("event_id") else None
        try:
            await broker.publish(
                orjson.dumps(message), target, headers=headers, stream=METRICS_STREAM.name,
                timeout=settings.publish_timeout_seconds,
            )
        except Exception as exc:  # noqa: BLE001 - any bus failure is a 503 for the producer.
            logger.warning("Publishing metrics from HTTP to %s failed: %r", target, exc)
            return _error(503, "the metrics stream is unavailable: retry later", "unavailable")

        return JSONResponse(
            {"subject": target, "accepted": parsed.accepted, "rejected": errors},
            status_code=202,
        )

    async def alerts(request: Request, model: Any, source: str) -> JSONResponse:
        body = await read_body(request)
        if body is None:
            return _body_too_large("send fewer alerts per notification")
        try:
            payload = model.model_validate_json(body)
        except ValidationError as exc:
            HTTP_REJECTED.labels(reason="invalid_alert").inc()
            fields = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                      for e in exc.errors()[:20]]
            return JSONResponse(
                {"detail": f"invalid {source} webhook body: fix the fields listed in errors",
                 "errors": fields},
                status_code=422,
            )
        breaches, skipped = alert_breaches(source, payload.alerts, settings.detector)
        for breach in breaches:
            publisher.submit(breach)
        if skipped:
            logger.warning("Skipped %d firing %s alerts: %s", len(skipped), source,
                           "; ".join(item.reason for item in skipped[:5]))
        return JSONResponse(
            {"breaches": [str(b.event_id) for b in breaches], "skipped": describe_skipped(skipped)},
            status_code=202,
        )

    @router.post(
        "/api/alerts/alertmanager", status_code=202, dependencies=[auth.require("producer")]
    )
    async def post_alertmanager(request: Request) -> JSONResponse:
        """Turn firing Alertmanager alerts (webhook version 4) into breach events."""
        return await alerts(request, AlertmanagerPayload, "alertmanager")

    @router.post("/api/alerts/grafana", status_code=202, dependencies=[auth.require("producer")])
    async def post_grafana(request: Request) -> JSONResponse:
        """Turn firing Grafana alerts into breach events."""
        return await alerts(request, GrafanaPayload, "grafana")

    @router.get("/api/detector/windows", dependencies=[auth.require("viewer")])
    async def get_windows() -> list[dict[str, Any]]:
        """List the windows with their counts and the last outcome of each trigger."""
        return [_describe_window(window) for window in detector.windows.values()]

    return router


def _valid_part(document: dict[str, Any], parsed) -> dict[str, Any]:  # noqa: ANN001
    """Return the message with only its valid observations, in the batch form."""
    envelope = {key: document[key] for key in ("service", "environment", "version")}
    if document.get("event_id"):
        envelope["event_id"] = document["event_id"]
    if "observations" not in document:
        single = {k: v for k, v in document.items() if k not in {*envelope, "schema_version"}}
        return {**envelope, "observations": [single]}
    rejected = {r.index for r in parsed.rejections}
    kept = [item for i, item in enumerate(document["observations"]) if i not in rejected]
    return {**envelope, "observations": kept}


def _describe_window(window) -> dict[str, Any]:  # noqa: ANN001 - triggers.Window
    environment, service, version = window.key
    requests = window.requests
    return {
        "environment": environment,
        "service": service,
        "version": version,
        "requests": requests.count,
        "errors": requests.errors,
        "timeouts": requests.timeouts,
        "windowSeconds": window.thresholds.window_seconds,
        "minSamples": window.thresholds.min_samples,
        "healthFailures": dict(window.health.failures),
        "budgetRatio": window.budget.ratio,
        "outcomes": dict(window.last_outcomes),
        "inBreach": sorted(window.fired),
    }


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """Return the request body, or None as soon as it is known to be over ``limit`` bytes.

    The body is read chunk by chunk, so a huge body is never held in memory whole.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _body_too_large(fix: str) -> JSONResponse:
    return _error(413, f"body is over {MAX_BODY_BYTES} bytes: {fix}", "body_too_large")


def _error(status: int, detail: str, reason: str) -> JSONResponse:
    HTTP_REJECTED.labels(reason=reason).inc()
    return JSONResponse({"detail": detail}, status_code=status)
