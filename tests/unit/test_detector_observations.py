"""Validation of metrics messages, observation by observation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from services.detector import observations as obs
from services.detector.observations import parse_message
from shared.contracts import Observation

NOW = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC).timestamp()
AT = "2026-12-04T10:00:00.120Z"
ENVELOPE = {"service": "checkout", "environment": "production", "version": "v1.2.0"}


def parse(document, *, body: bytes | None = None, env="production", svc="checkout"):
    raw = body if body is not None else json.dumps(document).encode()
    return parse_message(raw, subject_environment=env, subject_service=svc, now=NOW,
                         max_clock_skew=300.0)


def batch(*items):
    return {**ENVELOPE, "observations": list(items)}


def request(**fields):
    return {"kind": "request", "at": AT, "latency_ms": 120.5, "status": 200, **fields}


def test_design_example_is_accepted():
    parsed = parse(batch(
        request(status=500),
        {"kind": "request", "at": "2026-12-04T10:00:00.310Z", "latency_ms": 31000,
         "timed_out": True},
        {"kind": "health_check", "at": "2026-12-04T10:00:01Z", "check": "http", "ok": False},
        {"kind": "budget", "at": "2026-12-04T10:00:02Z", "spent": 120.0, "budget": 100.0},
    ))
    assert parsed.rejections == []
    assert parsed.requests[0][1:] == (120.5, True, False)
    assert parsed.requests[1][1:] == (31000.0, True, True)
    assert parsed.health_checks == [(NOW + 1, "http", False, None)]
    assert parsed.budgets == [(NOW + 2, 120.0, 100.0)]


def test_nan_latency_is_rejected_and_the_rest_kept():
    parsed = parse(batch(request(), request(latency_ms=float("nan")), request(status=503)))
    assert len(parsed.requests) == 2
    assert len(parsed.rejections) == 1
    assert parsed.rejections[0].reason == obs.NOT_FINITE
    assert parsed.rejections[0].index == 1
    assert parsed.rejections[0].field == "latency_ms"


def test_infinity_and_negative_latency_are_rejected():
    parsed = parse(batch(request(latency_ms=float("inf")), request(latency_ms=-1)))
    assert [r.reason for r in parsed.rejections] == [obs.NOT_FINITE, obs.NEGATIVE]
    assert parsed.accepted == 0


def test_future_timestamp_is_rejected():
    parsed = parse(batch(request(at="2026-12-04T10:10:00Z"), request(at="2026-12-04T10:04:00Z")))
    assert [r.reason for r in parsed.rejections] == [obs.FUTURE_TIMESTAMP]
    assert len(parsed.requests) == 1
    assert "MAX_CLOCK_SKEW" in parsed.rejections[0].message


def test_timestamp_without_zone_is_rejected():
    parsed = parse(batch(request(at="2026-12-04T10:00:00")))
    assert parsed.rejections[0].reason == obs.INVALID_FIELD
    assert parsed.rejections[0].field == "at"


def test_missing_and_unknown_fields_are_rejected():
    missing_latency = {"kind": "request", "at": AT}
    unknown_field = request(colour="red")
    parsed = parse(batch(missing_latency, unknown_field, {"kind": "weather"}, "text"))
    assert [r.reason for r in parsed.rejections] == [obs.INVALID_FIELD] * 4
    assert parsed.rejections[0].field == "latency_ms"


def test_subject_mismatch_is_rejected():
    parsed = parse(batch(request()), svc="payments")
    assert parsed.accepted == 0
    assert parsed.rejections[0].reason == obs.SUBJECT_MISMATCH
    assert "metrics.production.checkout" in parsed.rejections[0].message


def test_invalid_envelope_is_rejected_whole():
    for document, field in (
        ({**batch(request()), "service": "Check Out"}, "service"),
        ({**batch(request()), "version": "../etc"}, "version"),
        ({**batch(request()), "event_id": "not-a-uuid"}, "event_id"),
        ({**ENVELOPE, "observations": []}, "observations"),
        ([1, 2], "body"),
    ):
        parsed = parse(document)
        assert parsed.accepted == 0
        assert parsed.rejections[0].reason == obs.INVALID_ENVELOPE
        assert parsed.rejections[0].field == field


def test_invalid_json_is_rejected():
    parsed = parse(None, body=b"{not json")
    assert parsed.rejections[0].reason == obs.INVALID_JSON


def test_single_observation_form_is_accepted():
    parsed = parse({**ENVELOPE, **request(status=502)})
    assert parsed.rejections == []
    assert parsed.requests[0][2] is True


def test_numeric_strings_follow_the_contract():
    parsed = parse(batch(request(latency_ms="120.5")))
    assert parsed.rejections == []
    assert parsed.requests[0][1] == 120.5


observation_values = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 700),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.sampled_from([AT, "2026-12-04T10:00:00", "2026-12-04T10:00:00+02:00", "20261204T100000Z"]),
)
request_like = st.fixed_dictionaries(
    {"kind": st.just("request"), "at": st.sampled_from([AT, "2026-12-04 10:00:00Z", 5, "bad"]),
     "latency_ms": observation_values},
    optional={"status": observation_values, "ok": observation_values,
              "timed_out": observation_values, "extra": observation_values},
)
health_like = st.fixed_dictionaries(
    {"kind": st.just("health_check"), "at": st.sampled_from([AT, "2026-12-04T10:00:00"]),
     "check": st.one_of(st.text(max_size=3), st.integers()), "ok": observation_values},
    optional={"check_id": st.one_of(st.none(), st.text(max_size=3), st.integers())},
)


@settings(max_examples=400)
@given(st.one_of(request_like, health_like))
def test_fast_path_agrees_with_the_contract(item):
    adapter = TypeAdapter(Observation)
    try:
        model = adapter.validate_python(item)
    except ValidationError:
        model = None
    parsed = parse_message(json.dumps(batch(item)).encode(), subject_environment="production",
                           subject_service="checkout", now=NOW + 10**9, max_clock_skew=0.0)
    assert (parsed.accepted == 1) == (model is not None)
    if model is not None and model.kind == "request":
        assert parsed.requests == [(model.at.timestamp(), model.latency_ms, model.is_error,
                                    model.timed_out)]
