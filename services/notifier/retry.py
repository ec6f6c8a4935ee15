"""When a delivery is retried, how long it waits, and when it is given up.

- 2xx: delivered.
- 429, and 420 (Statuspage's "enhance your calm"): rate limited. The next attempt waits at
  least ``Retry-After`` and does not count against the attempt limit, so a busy but healthy
  endpoint never makes a message fail. ``max_delivery_age_seconds`` still bounds it.
- 408, 5xx, and transport errors (refused, reset, timed out): retried with exponential backoff
  and jitter, up to the attempt limit.
- Any other 4xx: the request itself is wrong (a revoked webhook, a bad payload), so repeating
  it cannot help. It is given up at once and the response is logged.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RATE_LIMIT_STATUSES = frozenset({420, 429})
# Retry-After values above this are treated as this many seconds.
MAX_RETRY_AFTER_SECONDS = 3600.0


class Verdict(enum.Enum):
    """The result class of one HTTP attempt."""

    DELIVERED = "delivered"
    RATE_LIMITED = "rate_limited"
    RETRYABLE = "retryable"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one request: a response, or a transport error without one."""

    status_code: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    error: str | None = None
    # Data a channel keeps from a successful response, such as a Statuspage incident id.
    data: Mapping[str, str] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        """Classify the attempt by its status code."""
        code = self.status_code
        if code is None:
            return Verdict.RETRYABLE
        if 200 <= code < 300:
            return Verdict.DELIVERED
        if code in RATE_LIMIT_STATUSES:
            return Verdict.RATE_LIMITED
        if code == 408 or code >= 500:
            return Verdict.RETRYABLE
        return Verdict.REJECTED

    def describe(self) -> str:
        """Return e.g. ``HTTP 404: channel_not_found`` or the transport error, for logs."""
        if self.status_code is None:
            return self.error or "no response"
        body = " ".join(self.body.split())[:300]
        return f"HTTP {self.status_code}: {body}" if body else f"HTTP {self.status_code}"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Return a header's value, matching its name without regard to case."""
    expected = name.lower()
    return next((value for key, value in headers.items() if key.lower() == expected), None)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header requests (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def backoff_delay(
    failures: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Return the wait after the ``failures``-th failed attempt: ``base * 2**(n-1)``, capped,
    with equal jitter (half fixed, half random), so retries of many messages spread out."""
    exponential = min(cap, base * 2 ** max(failures - 1, 0))
    return exponential / 2 + (rng or random).uniform(0, exponential / 2)


@dataclass(frozen=True)
class RetryPolicy:
    """The retry settings of one channel."""

    max_attempts: int
    backoff_seconds: float
    backoff_max_seconds: float
    max_age_seconds: float


@dataclass(frozen=True)
class NextStep:
    """The decision on a delivery after an attempt: give up, or retry after a delay."""

    give_up: bool
    delay: float = 0.0
    counts_as_attempt: bool = True
    reason: str = ""


def next_step(
    result: AttemptResult,
    *,
    failures: int,
    age_seconds: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> NextStep:
    """Decide, after a failed attempt, whether and when to try again.

    ``failures`` counts the failed attempts so far, this one included, 429s excluded.
    """
    verdict = result.verdict
    if verdict is Verdict.REJECTED:
        return NextStep(give_up=True, reason=f"rejected, not retried: {result.describe()}")
    if verdict is Verdict.RATE_LIMITED:
        retry_after = parse_retry_after(header(result.headers, "Retry-After"))
        delay = backoff_delay(1, policy.backoff_seconds, policy.backoff_max_seconds, rng)
        if retry_after is not None:
            # At least Retry-After, plus a little jitter so that replicas do not retry together.
            delay = retry_after + (rng or random).uniform(0, min(1.0, 0.1 * retry_after + 0.05))
        counts = False
    else:
        delay = backoff_delay(failures, policy.backoff_seconds, policy.backoff_max_seconds, rng)
        counts = True
    if counts and failures >= policy.max_attempts:
        return NextStep(
            give_up=True, reason=f"gave up after {failures} attempts: {result.describe()}"
        )
    if age_seconds + delay > policy.max_age_seconds:
        return NextStep(
            give_up=True,
            reason=f"gave up after {age_seconds:.0f} s undelivered: {result.describe()}",
        )
    return NextStep(give_up=False, delay=delay, counts_as_attempt=counts, reason=result.describe())
