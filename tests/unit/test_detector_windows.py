"""Request windows and the nearest-rank P95, checked against brute force with hypothesis."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.windows import (
    Budget,
    HealthChecks,
    RequestWindow,
    nearest_rank,
    percentile_nearest_rank,
)

latencies = st.floats(min_value=0, max_value=60_000, allow_nan=False, allow_infinity=False)
requests = st.tuples(
    st.floats(min_value=0, max_value=300, allow_nan=False),  # at, seconds
    latencies,
    st.booleans(),  # is_error
    st.booleans(),  # timed_out
)


def heap_flags(item: tuple[float, float, bool, bool], threshold: float) -> int:
    """The window orders equal times by latency, then by these flags."""
    _at, latency, is_error, timed_out = item
    flags = 0
    if is_error:
        flags |= 1
    if timed_out or latency >= 30_000.0:
        flags |= 2
    if latency > threshold:
        flags |= 4
    return flags


def brute_force_p95(values: list[float]) -> float:
    ordered = sorted(values)
    rank = math.ceil(0.95 * len(ordered) - 1e-9)
    return ordered[max(rank, 1) - 1]


@given(st.lists(latencies, min_size=1, max_size=500))
def test_p95_matches_brute_force(values):
    assert percentile_nearest_rank(values) == brute_force_p95(values)


def test_p95_of_twenty_values_is_the_nineteenth():
    assert percentile_nearest_rank(range(1, 21)) == 19


def test_nearest_rank_uses_integer_arithmetic():
    assert nearest_rank(20) == 19
    assert nearest_rank(100) == 95
    assert nearest_rank(1) == 1
    assert nearest_rank(21) == 20


def test_p95_of_nothing_raises():
    with pytest.raises(ValueError, match="no values"):
        percentile_nearest_rank([])


@settings(max_examples=300)
@given(
    batches=st.lists(st.lists(requests, min_size=1, max_size=30), min_size=1, max_size=8),
    window_seconds=st.sampled_from([1.0, 10.0, 60.0]),
    max_samples=st.integers(min_value=1, max_value=60),
    threshold=st.sampled_from([100.0, 5000.0, 30_000.0]),
)
def test_window_matches_brute_force(batches, window_seconds, max_samples, threshold):
    window = RequestWindow(window_seconds, max_samples, threshold, 30_000.0)
    kept: list[tuple[float, float, bool, bool]] = []
    for batch in batches:
        window.add_many(batch)
        kept.extend(batch)
        end = max(item[0] for item in kept)
        kept = [item for item in kept if item[0] > end - window_seconds]
        kept.sort(key=lambda item: (item[0], item[1], heap_flags(item, threshold)))
        if len(kept) > max_samples:
            kept = kept[len(kept) - max_samples:]

        assert window.count == len(kept)
        assert window.errors == sum(1 for item in kept if item[2])
        assert window.timeouts == sum(1 for item in kept if item[3] or item[1] >= 30_000.0)
        assert sorted(window.latencies()) == sorted(item[1] for item in kept)
        if kept:
            p95 = brute_force_p95([item[1] for item in kept])
            assert window.p95() == p95
            assert window.p95_exceeds_threshold == (p95 > threshold)


def test_window_expires_by_event_time_not_arrival():
    window = RequestWindow(60.0, 1000, 5000.0, 30_000.0)
    window.add_many([(100.0, 1.0, False, False), (30.0, 2.0, True, False)])
    assert window.count == 1
    assert window.errors == 0
    window.add_many([(50.0, 3.0, True, False)])
    assert window.count == 2
    window.advance(111.0)
    assert window.count == 1


def test_window_keeps_at_most_max_samples():
    window = RequestWindow(60.0, 100, 5000.0, 30_000.0)
    window.add_many((i / 100, 10.0, i % 2 == 0, False) for i in range(1000))
    assert window.count == 100
    assert window.errors == 50
    assert min(item[0] for item in window._heap) == pytest.approx(9.0)


def test_empty_window_reports_zero_rates():
    window = RequestWindow(60.0, 100, 5000.0, 30_000.0)
    assert window.error_rate == 0.0
    assert window.timeout_rate == 0.0
    assert not window.p95_exceeds_threshold


def test_health_check_counts_repeated_id_once():
    health = HealthChecks()
    assert health.record("http", False, "r1")
    assert not health.record("http", False, "r1")
    assert health.failures["http"] == 1


def test_health_check_success_resets_only_its_check():
    health = HealthChecks()
    health.record("http", False, None)
    health.record("db", False, None)
    health.record("http", True, None)
    assert health.failures == {"http": 0, "db": 1}


def test_health_check_ids_are_bounded():
    health = HealthChecks(remembered_ids=10)
    for i in range(1000):
        health.record("http", True, f"id-{i}")
    assert len(health._seen) <= 20


def test_budget_keeps_the_newest_by_event_time():
    budget = Budget()
    assert budget.ratio is None
    assert budget.record(10.0, 50.0, 100.0)
    assert not budget.record(5.0, 150.0, 100.0)
    assert budget.ratio == 0.5
