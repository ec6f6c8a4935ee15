"""Prometheus metrics of the detector."""

from __future__ import annotations

from prometheus_client import Counter

OBSERVATIONS_ACCEPTED = Counter(
    "travi_detector_observations_accepted_total",
    "Observations that passed validation and entered a window.",
)
OBSERVATIONS_REJECTED = Counter(
    "travi_detector_observations_rejected_total",
    "Observations, or whole messages, rejected by validation, by reason.",
    ["reason"],
)
EVALUATIONS = Counter(
    "travi_detector_evaluations_total",
    "Trigger evaluations by trigger and outcome (pass, breach, no_data, invalid).",
    ["trigger", "outcome"],
)
BREACHES = Counter(
    "travi_detector_breaches_total",
    "Breach events published, by trigger (alert webhooks included).",
    ["trigger"],
)
BREACH_PUBLISH_FAILURES = Counter(
    "travi_detector_breach_publish_failures_total",
    "Failed attempts to publish a breach event; each is retried.",
)
MESSAGES_SKIPPED = Counter(
    "travi_detector_messages_skipped_total",
    "Redelivered metrics messages skipped because their observations were already applied.",
)
