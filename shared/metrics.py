"""Prometheus metrics that more than one package records.

Each service defines the metrics that only it records in its own modules. All of them land in
the default registry, which ``GET /metrics`` serves for the whole process.
"""

from __future__ import annotations

from prometheus_client import Counter

DEAD_LETTERS = Counter(
    "travi_dead_letters_total",
    "Messages sent to the dead-letter subject, by consumer.",
    ["consumer"],
)
HANDLER_RETRIES = Counter(
    "travi_handler_retries_total",
    "Messages handed back to JetStream for a later delivery, by consumer.",
    ["consumer"],
)
HTTP_REJECTED = Counter(
    "travi_http_rejected_total",
    "HTTP requests rejected for a missing or wrong token or invalid input, by reason.",
    ["reason"],
)
