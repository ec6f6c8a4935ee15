"""Alert webhook bodies to breach events."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.detector.alerts import (
    AlertmanagerPayload,
    GrafanaPayload,
    WebhookAlert,
    alert_breaches,
)
from shared.settings import DetectorSettings, Settings


def alert(status: str = "firing", **labels: str) -> WebhookAlert:
    return WebhookAlert(status=status, labels=labels, startsAt="2026-12-04T10:00:00Z",
                        fingerprint="f1", annotations={"summary": "errors are up"})


def test_firing_alert_becomes_breach():
    breaches, skipped = alert_breaches(
        "alertmanager", [alert(environment="production", service="checkout", version="v2")],
        DetectorSettings(),
    )
    assert skipped == []
    assert breaches[0].trigger == "alert"
    assert breaches[0].version == "v2"
    assert breaches[0].measured == 1.0
    assert "errors are up" in breaches[0].detail


def test_resolved_alert_does_nothing():
    breaches, skipped = alert_breaches(
        "grafana", [alert("resolved", environment="production", service="checkout")],
        DetectorSettings(),
    )
    assert breaches == []
    assert skipped == []


def test_invalid_labels_are_skipped_with_reason():
    alerts = [alert(environment="Prod", service="checkout"), alert(service="checkout")]
    breaches, skipped = alert_breaches("alertmanager", alerts, DetectorSettings())
    assert breaches == []
    assert "not a valid name" in skipped[0].reason
    assert "missing label 'environment'" in skipped[1].reason


def test_invalid_version_label_is_dropped():
    breaches, _ = alert_breaches(
        "alertmanager", [alert(environment="production", service="checkout", version="../x")],
        DetectorSettings(),
    )
    assert breaches[0].version is None


def test_repeated_notification_has_same_event_id():
    alerts = [alert(environment="production", service="checkout")]
    first, _ = alert_breaches("alertmanager", alerts, DetectorSettings())
    second, _ = alert_breaches("alertmanager", alerts, DetectorSettings())
    assert first[0].event_id == second[0].event_id


def test_grafana_value_is_measured():
    payload = GrafanaPayload.model_validate({
        "status": "firing", "orgId": 1, "alerts": [{
            "status": "firing", "labels": {"environment": "staging", "service": "search"},
            "values": {"B": None, "C": 42.5}, "startsAt": "2026-12-04T10:00:00Z",
        }],
    })
    breaches, _ = alert_breaches("grafana", payload.alerts, DetectorSettings())
    assert breaches[0].measured == 42.5


def test_alertmanager_payload_requires_version_4():
    body = {"version": "4", "status": "firing", "alerts": []}
    assert AlertmanagerPayload.model_validate(body).version == "4"
    with pytest.raises(ValidationError, match="version"):
        AlertmanagerPayload.model_validate({**body, "version": "3"})


def test_overrides_and_labels_from_environment(monkeypatch):
    monkeypatch.setenv("TRAVI_DETECTOR__OVERRIDES",
                       '{"production/checkout": {"error_rate": 0.05, "min_samples": 50}}')
    monkeypatch.setenv("TRAVI_DETECTOR__SERVICE_LABEL", "app")
    settings = Settings()
    assert settings.detector.overrides["production/checkout"].error_rate == 0.05
    assert settings.detector.overrides["production/checkout"].min_samples == 50
    assert settings.detector.service_label == "app"
