"""Retry decisions: rate limits, backoff with jitter, rejected requests, giving up."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.notifier.retry import (
    AttemptResult,
    RetryPolicy,
    Verdict,
    backoff_delay,
    next_step,
    parse_retry_after,
)

POLICY = RetryPolicy(
    max_attempts=3, backoff_seconds=0.5, backoff_max_seconds=10, max_age_seconds=600
)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (429, Verdict.RATE_LIMITED),
        (420, Verdict.RATE_LIMITED),
        (408, Verdict.RETRYABLE),
        (500, Verdict.RETRYABLE),
        (503, Verdict.RETRYABLE),
        (None, Verdict.RETRYABLE),
        (400, Verdict.REJECTED),
        (403, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (410, Verdict.REJECTED),
    ],
)
def test_verdict_by_status(status, verdict):
    assert AttemptResult(status).verdict is verdict


def test_retry_after_seconds():
    assert parse_retry_after("2") == 2.0


def test_retry_after_http_date():
    now = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
    value = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(value, now) == pytest.approx(30.0)


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_retry_after_unreadable(value):
    assert parse_retry_after(value) is None


def test_retry_after_capped_and_not_negative():
    assert parse_retry_after("999999") == 3600.0
    assert parse_retry_after("-5") == 0.0


def test_backoff_doubles_within_jitter():
    rng = random.Random(1)
    for failures, full in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]:
        delay = backoff_delay(failures, 0.5, 60, rng)
        assert full / 2 <= delay <= full


def test_backoff_capped():
    assert backoff_delay(30, 0.5, 10, random.Random(2)) <= 10


def test_rate_limit_waits_at_least_retry_after():
    result = AttemptResult(429, headers={"retry-after": "2"})
    for seed in range(20):
        step = next_step(result, failures=0, age_seconds=0, policy=POLICY, rng=random.Random(seed))
        assert not step.give_up
        assert step.delay >= 2.0
        assert not step.counts_as_attempt


def test_statuspage_420_waits_at_least_retry_after():
    step = next_step(
        AttemptResult(420, headers={"Retry-After": "3"}), failures=0, age_seconds=0, policy=POLICY
    )
    assert step.delay >= 3.0


def test_rate_limits_do_not_exhaust_attempts():
    result = AttemptResult(429, headers={"Retry-After": "1"})
    step = next_step(result, failures=POLICY.max_attempts, age_seconds=0, policy=POLICY)
    assert not step.give_up


def test_rejected_not_retried():
    step = next_step(
        AttemptResult(404, body="channel_not_found"), failures=1, age_seconds=0, policy=POLICY
    )
    assert step.give_up
    assert "channel_not_found" in step.reason


def test_server_error_retried_until_limit():
    result = AttemptResult(500, body="rollup_error")
    assert not next_step(result, failures=2, age_seconds=0, policy=POLICY).give_up
    last = next_step(result, failures=3, age_seconds=0, policy=POLICY)
    assert last.give_up
    assert "3 attempts" in last.reason


def test_old_delivery_given_up():
    result = AttemptResult(None, error="refused")
    step = next_step(result, failures=1, age_seconds=600, policy=POLICY)
    assert step.give_up
    assert "undelivered" in step.reason
