"""The statistics document and the split of a time range, without a database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from services.stats.summary import Totals, plan_range, stats_document


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_empty_document_has_zeros_and_nulls():
    document = stats_document(Totals())
    assert document == {
        "total": 0, "pending": 0, "inProgress": 0, "completed": 0, "failed": 0, "cancelled": 0,
        "automaticCount": 0, "manualCount": 0, "avgDurationMs": None, "successRate": None,
        "triggerBreakdown": {},
    }
    json.dumps(document, allow_nan=False)


def test_success_rate_ignores_cancelled():
    totals = Totals()
    totals.add("error_rate", "automatic", {"total": 3, "completed": 2, "cancelled": 1})
    totals.add("manual", "manual", {"total": 1, "failed": 1})
    document = stats_document(totals)
    assert document["successRate"] == 2 / 3
    assert document["automaticCount"] == 3
    assert document["manualCount"] == 1
    assert document["triggerBreakdown"] == {"error_rate": 3, "manual": 1}


def test_only_cancelled_gives_null_rate():
    totals = Totals()
    totals.add("latency", "automatic", {"total": 2, "cancelled": 2})
    assert stats_document(totals)["successRate"] is None


def test_average_over_counted_durations():
    totals = Totals()
    totals.add("latency", "automatic", {"total": 3, "completed": 3, "duration_sum_ms": 9000, "duration_count": 2})
    assert stats_document(totals)["avgDurationMs"] == 4500.0


def test_groups_with_zero_total_leave_no_breakdown():
    totals = Totals()
    totals.add("timeout", "automatic", {"total": 0})
    assert stats_document(totals)["triggerBreakdown"] == {}


def test_range_of_whole_days():
    ranges = plan_range(at("2026-11-20T00:00:00"), at("2026-11-22T00:00:00"))
    assert ranges.first_day == date(2026, 11, 20)
    assert ranges.end_day == date(2026, 11, 22)
    assert ranges.partial == ()
    assert ranges.has_whole_days


def test_range_with_partial_edges():
    since, until = at("2026-11-20T10:00:00"), at("2026-11-22T05:00:00")
    ranges = plan_range(since, until)
    assert ranges.first_day == date(2026, 11, 21)
    assert ranges.end_day == date(2026, 11, 22)
    assert ranges.partial == (
        (since, at("2026-11-21T00:00:00")),
        (at("2026-11-22T00:00:00"), until),
    )


def test_range_inside_one_day():
    since, until = at("2026-11-20T10:00:00"), at("2026-11-20T15:00:00")
    ranges = plan_range(since, until)
    assert ranges.partial == ((since, until),)
    assert not ranges.has_whole_days


def test_range_to_next_midnight():
    since = at("2026-11-20T10:00:00")
    ranges = plan_range(since, at("2026-11-21T00:00:00"))
    assert ranges.partial == ((since, at("2026-11-21T00:00:00")),)
    assert not ranges.has_whole_days


def test_open_ranges():
    since_only = plan_range(at("2026-11-20T10:00:00"), None)
    until_only = plan_range(None, at("2026-11-20T10:00:00"))
    assert since_only.first_day == date(2026, 11, 21)
    assert since_only.end_day is None
    assert since_only.partial == ((at("2026-11-20T10:00:00"), at("2026-11-21T00:00:00")),)
    assert until_only.first_day is None
    assert until_only.end_day == date(2026, 11, 20)
    assert until_only.partial == ((at("2026-11-20T00:00:00"), at("2026-11-20T10:00:00")),)


def test_range_in_other_zone_is_converted():
    zone = datetime(2026, 11, 20, 1, 0).astimezone().tzinfo
    local = datetime(2026, 11, 20, 1, 0, tzinfo=zone)
    ranges = plan_range(local, local + timedelta(hours=1))
    assert all(start.tzinfo == UTC for start, _ in ranges.partial)
