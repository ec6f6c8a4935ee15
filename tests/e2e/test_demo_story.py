"""The whole story on PostgreSQL: a real app goes bad and is rolled back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.demo import GOOD, run_demo
from shared.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.postgres, pytest.mark.slow]


def publish_spans(exporter: InMemorySpanExporter, kind: str) -> list:
    return [span for span in exporter.get_finished_spans()
            if span.name.startswith(f"rollback.{kind}.") and span.name.endswith(" publish")]


async def test_bad_version_rolled_back_on_postgres(tmp_path, postgres_url):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings(state_dir=tmp_path / "state", database_url=postgres_url, log_format="text")
    lines: list[str] = []

    result = await run_demo(settings, write=lines.append, tracer_provider=provider, timeout=60)

    assert result.outcome == "completed", "\n".join(lines)
    assert result.final_version == GOOD
    stats = result.stats
    assert stats["total"] == 1
    assert stats["completed"] == 1
    assert stats["automaticCount"] == 1
    assert stats["triggerBreakdown"] == {"error_rate": 1}
    assert sum(text.startswith("Rollback started") for text in result.slack_messages) == 1
    assert sum(text.startswith("Rollback completed") for text in result.slack_messages) == 1
    assert result.report_path is not None
    assert "Timeline" in result.report_path.read_text()
    assert any("step switch_version" in line and "succeeded" in line for line in lines)

    breach_spans = publish_spans(exporter, "breach")
    outcome_spans = publish_spans(exporter, "outcome")
    assert len(breach_spans) == 1
    assert len(outcome_spans) == 1
    assert outcome_spans[0].context.trace_id == breach_spans[0].context.trace_id


def test_travi_demo_command_on_sqlite(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAVI_")}
    env["TRAVI_STATE_DIR"] = str(tmp_path / "state")
    completed = subprocess.run([str(Path(sys.executable).with_name("travi")), "demo"], env=env,
                               capture_output=True, text=True, timeout=110)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "step switch_version    succeeded" in completed.stdout
    assert "Time to recovery" in completed.stdout
    assert '"triggerBreakdown": {"error_rate": 1}' in completed.stdout
    assert "Incident report: " in completed.stdout
