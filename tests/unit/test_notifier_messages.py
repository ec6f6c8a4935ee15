"""Routing, Slack Block Kit messages, status-page intents and webhook signatures."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError
from slack_sdk.models.blocks import Block

from services.notifier.channels import sign, verify
from services.notifier.routing import ConsumedEvent, classify, component_for, wants
from services.notifier.slack_blocks import build_message
from services.notifier.statuspage import incident_intent
from shared.fake_slack import slack_error
from tests.fakes import events
from tests.fakes.webhook import expected_signature

ADAPTER = TypeAdapter(ConsumedEvent)


def texts(message: dict) -> str:
    """All text of a message's blocks, joined."""
    parts = []
    for block in message["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts.extend(field["text"] for field in block.get("fields", []))
        parts.extend(element["text"] for element in block.get("elements", []))
    return "\n".join(parts)


@pytest.mark.parametrize(
    "event",
    [
        events.plan(),
        events.execute(events.plan()),
        events.step(events.plan(), "drain_connections", "running"),
        events.finished(events.plan()),
        events.suppressed(),
        events.escalation(events.plan()),
    ],
    ids=lambda event: type(event).__name__,
)
def test_consumed_event_round_trip(event):
    parsed = ADAPTER.validate_json(event.model_dump_json())
    assert parsed == event


def test_unknown_message_named_in_error():
    with pytest.raises(ValidationError, match="not a rollback event the notifier consumes"):
        ADAPTER.validate_python({"foo": 1})


def test_classify_kinds_and_keys():
    created = events.plan()
    assert classify(created).kind == "created"
    assert classify(events.execute(created)).kind == "started"
    completed = classify(events.finished(created))
    failed = classify(events.finished(created, "failed"))
    assert (completed.kind, completed.key) == ("completed", "finished")
    assert (failed.kind, failed.key) == ("failed", "finished")
    assert classify(events.suppressed(manual=True)).kind == "escalation"
    assert classify(events.suppressed("cooldown", manual=False)).kind == "suppressed"
    assert classify(events.escalation(created)).kind == "escalation"
    progress = classify(events.step(created, "cleanup", "succeeded", attempt=2))
    assert progress.key == "step:cleanup:succeeded:2"
    assert progress.coalesce_key == f"progress:{created.plan_id}"


def test_filter_by_kind():
    notification = classify(events.step(events.plan(), "cleanup", "running"))
    assert not wants(["started", "completed"], notification)
    assert wants(["step"], notification)


def test_component_lookup_prefers_environment():
    components = {"production/checkout": "c-prod", "checkout": "c-any"}
    assert component_for(components, "production", "checkout") == "c-prod"
    assert component_for(components, "staging", "checkout") == "c-any"
    assert component_for(components, "staging", "cart") is None


def test_started_message_content():
    created = events.plan()
    message = build_message(classify(events.execute(created)), channel="#incidents")
    text = texts(message)
    assert message["channel"] == "#incidents"
    assert message["blocks"][0]["type"] == "header"
    for expected in ("checkout", "production", "v1.2.0", "v1.1.0", str(created.plan_id),
                     "15.3 %", "10.0 %"):
        assert expected in text
    assert "Rollback started" in message["text"]
    assert slack_error(json.dumps(message).encode()) is None


def test_completed_message_has_duration():
    message = build_message(classify(events.finished(events.plan())), channel=None)
    assert "8.5 s" in texts(message)
    assert "channel" not in message


def test_failed_message_names_step_error_and_manual_action():
    message = build_message(classify(events.finished(events.plan(), "failed")), channel=None)
    text = texts(message)
    assert "switch_version" in text
    assert "release v1.1.0 not found" in text
    assert "Manual action needed" in text
    assert "Manual action needed" in message["text"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (events.suppressed("no_target"), "no known-good version"),
        (events.suppressed("loop_guard"), "loop guard"),
        (events.escalation(events.plan()), "watch_breach"),
    ],
)
def test_escalation_messages(event, expected):
    message = build_message(classify(event), channel=None)
    assert expected in texts(message)
    assert "Manual action needed" in texts(message)


def test_event_text_escaped():
    created = events.plan(reason="x")
    failed = events.finished(created, "failed", error="boom <!channel> & <https://x|y>")
    text = texts(build_message(classify(failed), channel=None))
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://x|y&gt;" in text


def test_long_error_kept_within_limits():
    failed = events.finished(events.plan(), "failed", error="é<" * 1999)
    message = build_message(classify(failed), channel=None)
    assert slack_error(json.dumps(message).encode()) is None
    for block in message["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    Block.parse_all(message["blocks"])  # slack_sdk accepts them back


def test_long_service_header_within_limit():
    created = events.plan(service="s" * 63, environment="e" * 63)
    message = build_message(classify(events.execute(created)), channel=None)
    assert len(message["blocks"][0]["text"]["text"]) <= 150


def test_progress_message_lists_steps():
    created = events.plan()
    history = [
        events.step(created, "validate_target", "succeeded", at=3, duration_ms=100),
        events.step(created, "pause_traffic", "running", at=4),
    ]
    message = build_message(classify(history[-1]), channel=None, steps=history)
    text = texts(message)
    assert "validate_target succeeded" in text
    assert "pause_traffic running" in text


def test_statuspage_intents():
    created = events.plan()
    opened = incident_intent(classify(events.execute(created)), "comp1")
    resolved = incident_intent(classify(events.finished(created)), "comp1")
    failed = incident_intent(classify(events.finished(created, "failed")), "comp1")
    assert (opened["status"], opened["component_status"]) == ("identified", "degraded_performance")
    assert (resolved["status"], resolved["component_status"]) == ("resolved", "operational")
    assert (failed["status"], failed["component_status"]) == ("identified", "degraded_performance")
    assert "release v1.1.0 not found" not in failed["body"]
    assert incident_intent(classify(events.step(created, "cleanup", "running")), "comp1") is None


def test_signature_matches_independent_computation():
    body = b'{"type":"PlanFinished"}'
    signature = sign(b"s3cret", "1764842400", body)
    assert signature == expected_signature("s3cret", "1764842400", body)
    assert verify(b"s3cret", "1764842400", body, signature)
    assert not verify(b"s3cret", "1764842401", body, signature)


def test_missing_field_error_names_field():
    body = events.finished(events.plan()).model_dump(mode="json")
    del body["outcome"]
    with pytest.raises(ValidationError) as caught:
        ADAPTER.validate_python(body)
    locations = [error["loc"] for error in caught.value.errors()]
    assert locations == [("PlanFinished", "outcome")]


def test_escalation_and_suppression_told_apart():
    escalation = events.escalation(events.plan()).model_dump(mode="json")
    suppression = events.suppressed().model_dump(mode="json")
    assert type(ADAPTER.validate_python(escalation)).__name__ == "EscalationRaised"
    assert type(ADAPTER.validate_python(suppression)).__name__ == "BreachSuppressed"
