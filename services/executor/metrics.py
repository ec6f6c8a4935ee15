"""Prometheus metrics that only the executor records."""

from __future__ import annotations

from prometheus_client import Counter

PLANS_FINISHED = Counter(
    "travi_executor_plans_finished_total", "Plans the executor finished, by outcome.", ["outcome"]
)
STEPS_FINISHED = Counter(
    "travi_executor_step_attempts_total",
    "Step attempts the executor finished, by step and status.",
    ["step", "status"],
)
COMMANDS_IGNORED = Counter(
    "travi_executor_commands_ignored_total",
    "Execute and cancel commands ignored because the plan was already handled, by plan status.",
    ["status"],
)
INVALID_COMMANDS = Counter(
    "travi_executor_invalid_commands_total",
    "Commands that failed validation and went to the dead-letter subject, by subject.",
    ["subject"],
)
TAKEOVERS = Counter(
    "travi_executor_takeovers_total", "Plans taken over after their heartbeat went stale."
)
PUBLISH_FAILURES = Counter(
    "travi_executor_publish_failures_total",
    "Events the executor failed to publish, by event type.",
    ["event"],
)
ESCALATIONS = Counter(
    "travi_executor_escalations_total", "EscalationRaised events published, by reason.", ["reason"]
)
