"""Trigger decisions: the four outcomes, edge triggering and per-service thresholds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.detector.observations import ParsedMessage
from services.detector.thresholds import resolve
from services.detector.triggers import BREACH, NO_DATA, PASS, Detector
from shared.settings import DetectorSettings, TriggerThresholds

T0 = 1_800_000_000.0


def message(
    requests=(), health=(), budgets=(), *, service="checkout", version="v2"
) -> ParsedMessage:
    return ParsedMessage(
        environment="production",
        service=service,
        version=version,
        requests=list(requests),
        health_checks=list(health),
        budgets=list(budgets),
    )


def ok(at: float, latency: float = 50.0) -> tuple[float, float, bool, bool]:
    return (at, latency, False, False)


def failed(at: float, latency: float = 50.0) -> tuple[float, float, bool, bool]:
    return (at, latency, True, False)


def fired(decisions, trigger: str) -> list:
    return [d for d in decisions if d.fired and d.trigger == trigger]


def test_zero_traffic_is_no_data_without_breach():
    detector = Detector(DetectorSettings())
    detector.apply(message([ok(T0)]), 1, T0)
    decisions = detector.advance_idle(T0 + 90, idle_after=1.0, sequence=1)
    window = detector.windows["production", "checkout", "v2"]
    assert window.requests.count == 0
    assert decisions == []
    assert window.last_outcomes["error_rate"] == NO_DATA
    assert detector.outcomes["error_rate", NO_DATA] == 2
    assert detector.outcomes["error_rate", BREACH] == 0


def test_idle_window_is_dropped_after_two_windows():
    detector = Detector(DetectorSettings(window_seconds=10))
    detector.apply(message([ok(T0)]), 1, T0)
    detector.advance_idle(T0 + 5, idle_after=1.0)
    detector.advance_idle(T0 + 30, idle_after=1.0)
    assert detector.windows == {}


def test_one_error_of_two_is_too_few_samples():
    detector = Detector(DetectorSettings())
    decisions = detector.apply(message([ok(T0), failed(T0 + 0.1)]), 1, T0)
    assert decisions == []
    assert detector.outcomes["error_rate", NO_DATA] == 1
    assert detector.outcomes["error_rate", PASS] == 0


def test_three_errors_of_twenty_fire_once():
    detector = Detector(DetectorSettings())
    traffic = [ok(T0 + i * 0.1) for i in range(17)] + [failed(T0 + 2 + i * 0.1) for i in range(3)]
    decisions = detector.apply(message(traffic), 7, T0)
    breaches = fired(decisions, "error_rate")
    assert len(breaches) == 1
    assert breaches[0].measured == pytest.approx(0.15)
    assert breaches[0].threshold == 0.10
    assert breaches[0].samples == 20
    assert breaches[0].window_seconds == 60.0
    assert breaches[0].version == "v2"
    assert "3 of 20 requests failed" in breaches[0].detail

    more = detector.apply(message([failed(T0 + 3)]), 8, T0)
    assert fired(more, "error_rate") == []


def test_two_errors_of_twenty_pass():
    detector = Detector(DetectorSettings())
    traffic = [ok(T0 + i * 0.1) for i in range(18)] + [failed(T0 + 2), failed(T0 + 2.1)]
    assert detector.apply(message(traffic), 1, T0) == []
    assert detector.outcomes["error_rate", PASS] == 1


def test_breach_rearms_only_after_a_pass():
    detector = Detector(DetectorSettings(min_samples=2))
    first = detector.apply(message([failed(T0), failed(T0 + 1)]), 1, T0)
    assert len(fired(first, "error_rate")) == 1
    healthy = detector.apply(message([ok(T0 + 100 + i) for i in range(30)]), 2, T0)
    rearmed = [d for d in healthy if d.trigger == "error_rate" and not d.fired]
    assert len(rearmed) == 1
    again = detector.apply(message([failed(T0 + 131 + i) for i in range(30)]), 3, T0)
    assert len(fired(again, "error_rate")) == 1
    assert fired(again, "error_rate")[0].event_id != fired(first, "error_rate")[0].event_id


def test_no_data_does_not_rearm():
    detector = Detector(DetectorSettings(min_samples=2))
    detector.apply(message([failed(T0), failed(T0 + 1)]), 1, T0)
    detector.advance_idle(T0 + 100, idle_after=1.0)
    assert detector.windows["production", "checkout", "v2"].last_outcomes["error_rate"] == NO_DATA
    decisions = detector.apply(message([failed(T0 + 101), failed(T0 + 102)]), 2, T0 + 101)
    assert fired(decisions, "error_rate") == []


def test_breach_event_id_is_deterministic():
    traffic = [failed(T0 + i) for i in range(20)]
    first = Detector(DetectorSettings()).apply(message(traffic), 42, T0)
    second = Detector(DetectorSettings()).apply(message(traffic), 42, T0)
    assert [d.event_id for d in first] == [d.event_id for d in second]


def test_health_checks_fail_fail_ok_fail_fail_fail():
    detector = Detector(DetectorSettings())
    results = [False, False, True, False, False, False]
    breaches_at = []
    for index, ok_result in enumerate(results, start=1):
        result = [(T0 + index, "http", ok_result, None)]
        decisions = detector.apply(message(health=result), index, T0)
        other = detector.apply(
            message(health=[(T0 + index, "http", False, None)], service="payments"), 100 + index, T0
        )
        if index == 3:
            assert fired(other, "health_check") != []
        breaches_at += [index for _ in fired(decisions, "health_check")]
    assert breaches_at == [6]


def test_health_streak_inside_one_batch():
    detector = Detector(DetectorSettings())
    health = [(T0 + i, "http", ok_result, None)
              for i, ok_result in enumerate([False, False, False, True])]
    decisions = detector.apply(message(health=health), 1, T0)
    breaches = fired(decisions, "health_check")
    assert len(breaches) == 1
    assert breaches[0].measured == 3
    assert breaches[0].check == "http"


def test_redelivered_health_check_counts_once():
    detector = Detector(DetectorSettings())
    for index in range(5):
        decisions = detector.apply(message(health=[(T0, "http", False, "check-1")]), index, T0)
        assert fired(decisions, "health_check") == []
    decisions = detector.apply(message(health=[(T0 + 1, "http", False, "check-2"),
                                               (T0 + 2, "http", False, "check-3")]), 9, T0)
    assert len(fired(decisions, "health_check")) == 1


def test_health_checks_are_per_check():
    detector = Detector(DetectorSettings())
    health = [(T0 + i, name, False, None) for i in range(2) for name in ("http", "db")]
    assert detector.apply(message(health=health), 1, T0) == []


def test_budget_exceeded_at_ratio_one():
    detector = Detector(DetectorSettings())
    below = detector.apply(message(budgets=[(T0, 99.0, 100.0)]), 1, T0)
    assert fired(below, "budget_exceeded") == []
    decisions = detector.apply(message(budgets=[(T0 + 1, 100.0, 100.0)]), 2, T0)
    breaches = fired(decisions, "budget_exceeded")
    assert len(breaches) == 1
    assert breaches[0].measured == 1.0


def test_timeout_fires_on_one_by_default():
    detector = Detector(DetectorSettings())
    traffic = [ok(T0 + i) for i in range(19)] + [ok(T0 + 20, latency=30_000.0)]
    breaches = fired(detector.apply(message(traffic), 1, T0), "timeout")
    assert len(breaches) == 1
    assert breaches[0].measured == pytest.approx(0.05)


def test_flagged_timeout_counts_below_the_latency():
    detector = Detector(DetectorSettings())
    traffic = [ok(T0 + i) for i in range(19)] + [(T0 + 20, 10.0, True, True)]
    assert len(fired(detector.apply(message(traffic), 1, T0), "timeout")) == 1


def test_latency_p95_breach_reports_the_p95():
    detector = Detector(DetectorSettings())
    traffic = [ok(T0 + i, latency=100.0) for i in range(18)]
    traffic += [ok(T0 + 30, latency=6000.0), ok(T0 + 31, latency=7000.0)]
    breaches = fired(detector.apply(message(traffic), 1, T0), "latency")
    assert len(breaches) == 1
    assert breaches[0].measured == 6000.0
    assert breaches[0].threshold == 5000.0


def test_one_slow_of_twenty_passes():
    detector = Detector(DetectorSettings())
    traffic = [ok(T0 + i, latency=100.0) for i in range(19)] + [ok(T0 + 30, latency=9000.0)]
    assert fired(detector.apply(message(traffic), 1, T0), "latency") == []


def test_overrides_apply_per_environment_and_service():
    settings = DetectorSettings(
        overrides={
            "production/*": TriggerThresholds(error_rate=0.2, min_samples=5),
            "production/checkout": TriggerThresholds(error_rate=0.05),
        }
    )
    checkout = resolve(settings, "production", "checkout")
    payments = resolve(settings, "production", "payments")
    staging = resolve(settings, "staging", "checkout")
    assert (checkout.error_rate, checkout.min_samples) == (0.05, 5)
    assert (payments.error_rate, payments.min_samples) == (0.2, 5)
    assert (staging.error_rate, staging.min_samples) == (0.10, 20)


def test_override_window_and_min_samples_are_used():
    settings = DetectorSettings(overrides={"production/checkout": TriggerThresholds(min_samples=2)})
    detector = Detector(settings)
    decisions = detector.apply(message([failed(T0), failed(T0 + 1)]), 1, T0)
    assert len(fired(decisions, "error_rate")) == 1


def test_windows_are_bounded_in_number():
    detector = Detector(DetectorSettings(max_windows=3))
    for index in range(10):
        detector.apply(message([ok(T0)], version=f"v{index}"), index, T0)
    assert len(detector.windows) == 3
    assert ("production", "checkout", "v9") in detector.windows


request_strategy = st.tuples(
    st.floats(min_value=0, max_value=200, allow_nan=False),  # seconds after T0
    st.sampled_from([10.0, 6000.0, 40_000.0]),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(request_strategy, min_size=1, max_size=15), min_size=1, max_size=12))
def test_request_triggers_match_brute_force(batches):
    limits = DetectorSettings(window_seconds=30.0, min_samples=5)
    detector = Detector(limits)
    seen: list[tuple[float, float, bool, bool]] = []
    in_breach = {"error_rate": False, "latency": False, "timeout": False}
    for sequence, batch in enumerate(batches, start=1):
        requests = [(T0 + at, latency, error, timed_out) for at, latency, error, timed_out in batch]
        # Read after every event time, as a detector behind its producers would be.
        decisions = detector.apply(message(requests), sequence, T0 + 200)
        seen += requests
        end = max(item[0] for item in seen)
        window = [item for item in seen if item[0] > end - 30.0]

        expected_fired = []
        if len(window) >= 5:
            latencies = sorted(item[1] for item in window)
            p95 = latencies[math.ceil(0.95 * len(latencies) - 1e-9) - 1]
            states = {
                "error_rate": sum(item[2] for item in window) / len(window) > 0.10,
                "latency": p95 > 5000.0,
                "timeout": sum(item[3] or item[1] >= 30_000 for item in window) / len(window) > 0,
            }
            for trigger, breached in states.items():
                if breached and not in_breach[trigger]:
                    expected_fired.append(trigger)
                if breached != in_breach[trigger]:
                    in_breach[trigger] = breached
        assert sorted(d.trigger for d in decisions if d.fired) == sorted(expected_fired)
        for decision in decisions:
            if decision.fired and decision.trigger == "latency":
                assert decision.measured == p95
