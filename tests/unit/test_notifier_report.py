"""The incident report rendered from a plan's events."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notifier.report import render, severity
from services.notifier.report_store import report_event_id, report_path
from tests.fakes import events

STEPS = ("validate_target", "pause_traffic", "drain_connections", "switch_version",
         "verify_health", "resume_traffic", "cleanup", "notify")


def completed_history():
    created = events.plan()
    history = [created, events.execute(created)]
    for index, name in enumerate(STEPS):
        history.append(events.step(created, name, "running", at=3 + index))
        history.append(events.step(created, name, "succeeded", at=3.5 + index, duration_ms=500))
    history.append(events.finished(created))
    return created, history


def test_report_sections_present():
    created, history = completed_history()
    markdown = render(created.plan_id, history)
    for heading in ("# Incident report: checkout in production", "## Summary", "## Timeline",
                    "## Root cause", "## Impact", "## Resolution", "## Action items"):
        assert heading in markdown
    for field in ("**Date:** 2026-12-04", "**Duration:** rollback 8.5 s", "**Severity:** SEV2",
                  str(created.plan_id)):
        assert field in markdown


def test_report_timeline_order():
    created, history = completed_history()
    markdown = render(created.plan_id, history)
    detected = markdown.index("Detected: error_rate 15.3 %")
    started = markdown.index("Rollback started by system")
    completed = markdown.index("Rollback completed")
    restored = markdown.index("Service restored on v1.1.0")
    assert detected < started < completed
    assert started < restored
    assert "detection to restoration" in markdown


def test_report_waits_for_outcome():
    created = events.plan()
    assert render(created.plan_id, [created, events.execute(created)]) is None


def test_failed_report_is_sev1_with_error():
    created = events.plan()
    markdown = render(created.plan_id, [created, events.execute(created),
                                        events.finished(created, "failed")])
    assert "**Severity:** SEV1" in markdown
    assert "release v1.1.0 not found" in markdown
    assert "Service restored" not in markdown


def test_escalation_after_outcome_raises_severity():
    created, history = completed_history()
    markdown = render(created.plan_id, [*history, events.escalation(created)])
    assert "**Severity:** SEV1" in markdown
    assert "watch_breach" in markdown


def test_table_cells_escaped():
    created = events.plan()
    failed = events.finished(created, "failed", error="a | b\nc")
    markdown = render(created.plan_id, [created, failed])
    assert "a \\| b c" in markdown


def test_severity_rules():
    created = events.plan()
    manual = events.plan(trigger="manual", trigger_type="manual", breach=None)
    assert severity(events.finished(created), escalated=False) == "SEV2"
    assert severity(events.finished(manual), escalated=False) == "SEV3"
    assert severity(events.finished(created, "cancelled"), escalated=False) == "SEV3"
    assert severity(events.finished(created), escalated=True) == "SEV1"


@pytest.mark.parametrize("plan_id", ["../../etc/passwd", "abc", "", "0" * 36])
def test_report_path_rejects_non_uuid(tmp_path: Path, plan_id):
    with pytest.raises(ValueError, match="invalid plan id"):
        report_path(tmp_path, plan_id)


def test_report_path_and_event_id_deterministic(tmp_path: Path):
    created = events.plan()
    path = report_path(tmp_path, str(created.plan_id))
    assert path == (tmp_path / f"{created.plan_id}.md").resolve()
    first = report_event_id(str(created.plan_id), "finished")
    assert first == report_event_id(str(created.plan_id), "finished")
    assert first != report_event_id(str(created.plan_id), "escalation:x")
