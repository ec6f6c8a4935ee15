"""Alert webhooks of Prometheus Alertmanager (webhook format version 4) and Grafana Alerting.

Both send a group of alerts, each with ``status`` ("firing" or "resolved"), ``labels``,
``annotations``, ``startsAt`` and usually a ``fingerprint``; Grafana adds ``values`` (the
query results by reference id). Each firing alert becomes a BreachDetected with trigger
``alert``; the environment, service and version come from the labels named in the detector
settings. Resolved alerts do nothing. An alert carries no threshold that TRAVI can compare
with, so a breach reports ``measured`` as Grafana's first value (1 when there is none) against a
threshold of 0.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import BreachDetected
from shared.names import NAME_PATTERN, VERSION_PATTERN
from shared.settings import DetectorSettings

ALERT_NAMESPACE = uuid.UUID("9d3c2b1a-6f4e-4c8d-a1b2-7e5f0c9d8a31")


class WebhookAlert(BaseModel):
    """One alert of a webhook notification; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""  # noqa: N815 - the senders' field name
    fingerprint: str = ""
    values: dict[str, float | None] | None = None


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook body; only version 4 exists."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[WebhookAlert] = Field(max_length=1000)


class GrafanaPayload(BaseModel):
    """Grafana Alerting's webhook body."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    receiver: str = ""
    orgId: int | None = None  # noqa: N815 - the sender's field name
    alerts: list[WebhookAlert] = Field(max_length=1000)


@dataclass(frozen=True, slots=True)
class SkippedAlert:
    """A firing alert that could not become a breach, and why."""

    index: int
    reason: str


def alert_breaches(
    source: str,
    alerts: list[WebhookAlert],
    settings: DetectorSettings,
) -> tuple[list[BreachDetected], list[SkippedAlert]]:
    """Turn the firing ``alerts`` into breach events, and list the skipped ones with the reason."""
    breaches: list[BreachDetected] = []
    skipped: list[SkippedAlert] = []
    for index, alert in enumerate(alerts):
        if alert.status != "firing":
            continue
        environment = alert.labels.get(settings.environment_label, "")
        service = alert.labels.get(settings.service_label, "")
        problem = _label_problem(settings, environment, service)
        if problem is not None:
            skipped.append(SkippedAlert(index, problem))
            continue
        version = alert.labels.get(settings.version_label)
        if version is not None and (not VERSION_PATTERN.match(version) or ".." in version):
            version = None
        breaches.append(
            BreachDetected(
                event_id=_event_id(source, alert),
                environment=environment,
                service=service,
                version=version,
                trigger="alert",
                measured=_measured(alert),
                threshold=0.0,
                detail=_detail(source, alert)[:2000],
            )
        )
    return breaches, skipped


def _label_problem(settings: DetectorSettings, environment: str, service: str) -> str | None:
    labels = ((settings.environment_label, environment), (settings.service_label, service))
    for label, value in labels:
        if not value:
            return f"missing label {label!r}: add it to the alert rule"
        if not NAME_PATTERN.match(value):
            return (f"label {label}={value!r} is not a valid name: use lowercase letters, "
                    "digits and '-'")
    return None


def _event_id(source: str, alert: WebhookAlert) -> uuid.UUID:
    """Return an id that repeats when the same alert is notified again with the same start."""
    identity = alert.fingerprint or ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    return uuid.uuid5(ALERT_NAMESPACE, f"{source}/{identity}/{alert.startsAt}")


def _measured(alert: WebhookAlert) -> float:
    for value in (alert.values or {}).values():
        if value is not None and math.isfinite(value):
            return float(value)
    return 1.0


def _detail(source: str, alert: WebhookAlert) -> str:
    name = alert.labels.get("alertname", "unnamed alert")
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = f"{source} alert {name!r} is firing since {alert.startsAt or 'an unknown time'}"
    text = f"{text}: {summary}" if summary else text
    # Consumers store the detail in text columns, and PostgreSQL rejects NUL in those.
    return text.replace("\x00", "")


def describe_skipped(skipped: list[SkippedAlert]) -> list[dict[str, Any]]:
    """Return the skipped alerts as JSON-ready objects."""
    return [{"index": item.index, "reason": item.reason} for item in skipped]
