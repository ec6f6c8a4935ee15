"""Event contracts: JSON round trips, UTC timestamps and strict validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from pydantic import ValidationError

from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    CancelPlan,
    DeploymentRecorded,
    EscalationRaised,
    ExecutePlan,
    IncidentReportStored,
    MetricsReported,
    NotificationFailed,
    PlanCreated,
    PlanFinished,
    RequestObservation,
    StepChanged,
)

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def breach() -> BreachDetected:
    return BreachDetected(environment="production", service="checkout", version="v1.2.0",
                          trigger="error_rate", measured=0.15, threshold=0.1,
                          window_seconds=60, samples=20, detected_at=NOW)


def plan() -> PlanCreated:
    return PlanCreated(plan_id=uuid4(), environment="production", service="checkout",
                       from_version="v1.2.0", to_version="v1.1.0", trigger="error_rate",
                       trigger_type="automatic", actor="planner", created_at=NOW, breach=breach())


EXAMPLES = [
    breach(),
    plan(),
    ExecutePlan(plan=plan(), actor="alice"),
    CancelPlan(plan=plan(), actor="alice", reason="wrong target"),
    DeploymentRecorded(environment="production", service="checkout", version="v1.2.0",
                       status="succeeded", actor="ci", deployed_at=NOW),
    StepChanged(plan_id=uuid4(), environment="production", service="checkout",
                step="drain_connections", status="succeeded", started_at=NOW,
                finished_at=NOW + timedelta(seconds=1), duration_ms=1000.0),
    PlanFinished(plan_id=uuid4(), environment="production", service="checkout",
                 from_version="v1.2.0", to_version="v1.1.0", trigger="manual",
                 trigger_type="manual", outcome="failed", started_at=NOW, finished_at=NOW,
                 duration_ms=0.0, failed_step="switch_version", error="exit code 1"),
    BreachSuppressed(environment="production", service="checkout", reason="no_target",
                     breach=breach(), needs_manual_action=True),
    EscalationRaised(environment="production", service="checkout", reason="watch_breach"),
    IncidentReportStored(plan_id=uuid4(), environment="production", service="checkout",
                         markdown="# Incident"),
    NotificationFailed(environment="production", service="checkout", channel="slack",
                       source_event_id=uuid4(), error="HTTP 404", status_code=404),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda event: type(event).__name__)
def test_contract_round_trip(event):
    decoded = type(event).model_validate_json(event.model_dump_json())
    assert decoded == event
    assert decoded.schema_version == 1


def test_timestamps_convert_to_utc():
    at = datetime(2026, 12, 4, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    observation = RequestObservation(at=at, latency_ms=1.0)
    assert observation.at == NOW
    assert observation.at.tzinfo == UTC


def test_naive_timestamp_rejected():
    with pytest.raises(ValidationError, match="timezone"):
        RequestObservation(at=datetime(2026, 12, 4, 10, 0), latency_ms=1.0)


@pytest.mark.parametrize("latency", [float("nan"), float("inf"), -1.0])
def test_bad_latency_rejected(latency):
    with pytest.raises(ValidationError, match="latency_ms"):
        RequestObservation(at=NOW, latency_ms=latency)


def test_unknown_field_rejected():
    body = {**json.loads(breach().model_dump_json()), "measurd": 1}
    with pytest.raises(ValidationError, match="measurd"):
        BreachDetected.model_validate(body)


def test_metric_batch_parses_the_documented_example():
    body = {"service": "checkout", "environment": "production", "version": "v1.2.0",
            "observations": [
                {"kind": "request", "at": "2026-12-04T10:00:00.120Z", "latency_ms": 120.5, "status": 500},
                {"kind": "request", "at": "2026-12-04T10:00:00.310Z", "latency_ms": 31000, "timed_out": True},
                {"kind": "health_check", "at": "2026-12-04T10:00:01Z", "check": "http", "ok": False},
                {"kind": "budget", "at": "2026-12-04T10:00:02Z", "spent": 120.0, "budget": 100.0}]}
    batch = MetricsReported.model_validate(body)
    kinds = [observation.kind for observation in batch.observations]
    assert kinds == ["request", "request", "health_check", "budget"]
    assert batch.observations[0].is_error
    assert batch.observations[1].is_error


@pytest.mark.parametrize("status,ok,timed_out,expected", [
    (200, None, False, False), (500, None, False, True), (404, None, False, False),
    (200, False, False, True), (None, None, True, True),
])
def test_request_error_rule(status, ok, timed_out, expected):
    observation = RequestObservation(at=NOW, latency_ms=5.0, status=status, ok=ok, timed_out=timed_out)
    assert observation.is_error is expected


def test_plan_rejects_unsafe_version():
    with pytest.raises(ValidationError, match="to_version"):
        PlanCreated(plan_id=uuid4(), environment="production", service="checkout",
                    from_version="v1.2.0", to_version="../../etc", trigger="manual",
                    trigger_type="manual", actor="alice", created_at=NOW)
