"""Prometheus metrics of rollbacks, fed by the events the stats consumer applies.

Each process counts the events it applied itself, after they were committed, and a redelivered
event is not counted twice. Replicas share the durable consumer, so each counts its share and
the sum over the replicas is the whole. Counters start at zero when a process starts (the
usual Prometheus counter reset) and a rebuild of the view does not count the replayed events
again.

Where things are counted:

- ``travi_rollbacks_total``, ``travi_rollback_duration_seconds`` and
  ``travi_rollback_time_to_recovery_seconds``: from ``PlanFinished`` on rollback.outcome.>
  (time to recovery also needs the breach inside ``PlanCreated``).
- ``travi_breaches_total`` and ``travi_breaches_suppressed_total``: from ``BreachDetected``
  and ``BreachSuppressed``.
- ``travi_notification_failures_total`` and ``travi_escalations_total``: from
  ``NotificationFailed`` and ``EscalationRaised``.
- ``travi_invalid_events_total``: messages any consumer sent to the dead-letter subject, read
  from the dead-letter stream, so invalid metric events appear under the detector's consumer.
  The detector's own counter of invalid observations inside valid batches lives in the
  detector's process.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from services.stats.store import Fact

ROLLBACKS = Counter(
    "travi_rollbacks_total",
    "Rollback plans that reached an outcome, by trigger, trigger type and outcome.",
    ["trigger", "trigger_type", "outcome"],
)
ROLLBACK_DURATION = Histogram(
    "travi_rollback_duration_seconds",
    "Duration of finished rollback plans with a valid start and end, by outcome.",
    ["outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
TIME_TO_RECOVERY = Histogram(
    "travi_rollback_time_to_recovery_seconds",
    "Time from the breach that caused a plan to its completed outcome, by trigger.",
    ["trigger"],
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
BREACHES = Counter("travi_breaches_total", "Breaches detected, by trigger.", ["trigger"])
SUPPRESSIONS = Counter(
    "travi_breaches_suppressed_total", "Breaches not acted on, by reason.", ["reason"]
)
NOTIFICATION_FAILURES = Counter(
    "travi_notification_failures_total", "Notifications a channel gave up on, by channel.", ["channel"]
)
ESCALATIONS = Counter("travi_escalations_total", "Escalations raised to people.")
INVALID_EVENTS = Counter(
    "travi_invalid_events_total",
    "Messages sent to the dead-letter subject (invalid, or failed too often), by consumer.",
    ["consumer"],
)
REVERSED_TIMES = Counter(
    "travi_stats_reversed_times_total",
    "Finished plans left out of the average duration because they end before they start.",
)
EVENTS_APPLIED = Counter(
    "travi_stats_events_applied_total", "Rollback events applied to the stats view, by kind.", ["kind"]
)
EVENTS_DUPLICATE = Counter(
    "travi_stats_events_duplicate_total", "Rollback events skipped because they were applied before."
)


def record(facts: Iterable[Fact]) -> None:
    """Count the facts of one committed event."""
    for fact in facts:
        if fact.kind == "finished":
            trigger, trigger_type, outcome = fact.labels
            ROLLBACKS.labels(trigger, trigger_type, outcome).inc()
            if fact.value is not None:
                ROLLBACK_DURATION.labels(outcome).observe(fact.value)
        elif fact.kind == "recovery":
            TIME_TO_RECOVERY.labels(*fact.labels).observe(fact.value or 0.0)
        elif fact.kind == "breach":
            BREACHES.labels(*fact.labels).inc()
        elif fact.kind == "suppressed":
            SUPPRESSIONS.labels(*fact.labels).inc()
        elif fact.kind == "notification_failed":
            NOTIFICATION_FAILURES.labels(*fact.labels).inc()
        elif fact.kind == "escalation":
            ESCALATIONS.inc()
        elif fact.kind == "reversed_times":
            REVERSED_TIMES.inc()
