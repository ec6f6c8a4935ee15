"""Free text in the incident report (reasons, errors, actors) stays text in a Markdown viewer."""

from __future__ import annotations

import markdown_it

from services.notifier.report import render
from tests.fakes import events

HOSTILE = "<img src=x onerror=alert(1)> \\<script>alert(2)</script>"


def rendered_html(text: str) -> str:
    """Render Markdown as CommonMark with raw HTML allowed, as many viewers do."""
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def test_report_error_not_html() -> None:
    created = events.plan()
    failed = events.finished(created, "failed", error=HOSTILE)

    html = rendered_html(render(created.plan_id, [created, failed]))

    assert "<img" not in html
    assert "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_report_reason_and_actor_not_html() -> None:
    created = events.plan(
        trigger="manual", trigger_type="manual", breach=None, actor=HOSTILE, reason=HOSTILE
    )
    cancelled = events.finished(
        created, "cancelled", trigger="manual", trigger_type="manual", actor=HOSTILE
    )

    html = rendered_html(render(created.plan_id, [created, events.execute(created), cancelled]))

    assert "<img" not in html
    assert "<script" not in html


def test_report_text_reads_unchanged() -> None:
    created = events.plan()
    failed = events.finished(created, "failed", error="exit 3: C:\\temp > 5 & done | next")

    html = rendered_html(render(created.plan_id, [created, failed]))

    assert "exit 3: C:\\temp &gt; 5 &amp; done | next" in html


def test_manual_report_names_recovery_span() -> None:
    created = events.plan(trigger="manual", trigger_type="manual", breach=None)
    history = [created, events.execute(created)]
    history.append(events.step(created, "resume_traffic", "succeeded", at=5, duration_ms=10))
    finished = events.finished(created, trigger="manual", trigger_type="manual")

    markdown = render(created.plan_id, [*history, finished])

    assert "start to restoration" in markdown
    assert "detection" not in markdown
