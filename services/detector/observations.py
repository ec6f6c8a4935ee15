"""Read and validate the body of a metrics message, observation by observation.

A message on ``metrics.<env>.<svc>`` is either a batch (:class:`shared.contracts.MetricsReported`)
or one observation with the batch's envelope fields beside it::

    {"service": "checkout", "environment": "production", "version": "v1.2.0",
     "kind": "request", "at": "2026-12-04T10:00:00Z", "latency_ms": 120.5, "status": 200}

Each observation is validated on its own, so one bad observation does not discard the valid ones
beside it. Observations of the common shape (numbers as JSON numbers, ``at`` as an ISO 8601
string with a zone) take a fast path written out by hand. Everything else goes through the
pydantic models of ``shared.contracts``, which also word the error. Both paths accept the same
observations, which a property test checks. On top of the contract the detector rejects a
timestamp more than ``max_clock_skew_seconds`` in the future and a body whose service or
environment differs from the subject.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from shared.contracts import (
    BudgetObservation,
    HealthCheckObservation,
    Observation,
    RequestObservation,
)
from shared.names import NAME_PATTERN, VERSION_PATTERN

# Reasons, used as the label of the rejected-observations counter, so the set is fixed.
INVALID_JSON = "invalid_json"
INVALID_ENVELOPE = "invalid_envelope"
SUBJECT_MISMATCH = "subject_mismatch"
NOT_FINITE = "not_finite"
NEGATIVE = "negative"
FUTURE_TIMESTAMP = "future_timestamp"
INVALID_FIELD = "invalid_field"
REASONS = (
    INVALID_JSON,
    INVALID_ENVELOPE,
    SUBJECT_MISMATCH,
    NOT_FINITE,
    NEGATIVE,
    FUTURE_TIMESTAMP,
    INVALID_FIELD,
)

ENVELOPE_KEYS = frozenset({"schema_version", "event_id", "service", "environment", "version"})
REQUEST_KEYS = frozenset({"kind", "at", "latency_ms", "status", "ok", "timed_out"})
HEALTH_KEYS = frozenset({"kind", "at", "check", "ok", "check_id"})
MAX_OBSERVATIONS = 10_000
_NUMBER = (int, float)
_OPTIONAL_BOOL = (bool, type(None))
_OBSERVATION = TypeAdapter(Observation)
_MIN_TIMESTAMP_LENGTH = len("2026-12-04T10:00:00Z")
# Envelopes (service, environment, version) already validated, so a message of a known
# producer skips the three regular expressions; cleared when it reaches the limit.
MAX_CACHED_NAMES = 10_000
_VALID_NAMES: set[tuple[object, object, object]] = set()


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected observation (``index``), or message (``index`` None), with the reason."""

    reason: str
    field: str
    message: str
    index: int | None = None
    kind: str | None = None

    def describe(self) -> str:
        """Return the rejection as one line: where, what and why."""
        where = f"observations.{self.index}.{self.field}" if self.index is not None else self.field
        return f"{where}: {self.message}"


@dataclass(slots=True)
class ParsedMessage:
    """The valid observations of one message, split by kind, and what was rejected.

    Times are seconds since the epoch (UTC). ``requests`` contains ``(at, latency_ms, is_error,
    timed_out)`` tuples, ``health_checks`` contains ``(at, check, ok, check_id)`` tuples and
    ``budgets`` contains ``(at, spent, budget)`` tuples. Health checks keep their message order.
    """

    environment: str = ""
    service: str = ""
    version: str = ""
    requests: list[tuple[float, float, bool, bool]] = field(default_factory=list)
    health_checks: list[tuple[float, str, bool, str | None]] = field(default_factory=list)
    budgets: list[tuple[float, float, float]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        """Number of valid observations."""
        return len(self.requests) + len(self.health_checks) + len(self.budgets)

    def describe_rejections(self, limit: int = 10) -> str:
        """Return the first ``limit`` rejections as one line."""
        text = "; ".join(r.describe() for r in self.rejections[:limit])
        extra = len(self.rejections) - limit
        return f"{text}; and {extra} more" if extra > 0 else text


def load_json(body: bytes) -> Any:
    """Decode ``body``; NaN and Infinity literals (which orjson rejects) go through ``json``.

    Raises ValueError for invalid JSON, including nesting too deep for ``json``'s recursion.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body)
        except RecursionError as exc:
            raise ValueError("arrays or objects nested too deeply") from exc


def parse_message(
    body: bytes,
    *,
    subject_environment: str | None,
    subject_service: str | None,
    now: float,
    max_clock_skew: float,
) -> ParsedMessage:
    """Validate a metrics message and sort its observations into accepted and rejected.

    ``subject_environment`` and ``subject_service`` come from the subject (None over HTTP, where
    the body names them). ``now`` is the wall clock in seconds since the epoch.
    """
    parsed = ParsedMessage()
    try:
        document = load_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        parsed.rejections.append(Rejection(INVALID_JSON, "body", f"invalid JSON ({exc})"))
        return parsed
    return parse_document(
        document,
        parsed,
        subject_environment=subject_environment,
        subject_service=subject_service,
        now=now,
        max_clock_skew=max_clock_skew,
    )


def parse_document(
    document: Any,
    parsed: ParsedMessage | None = None,
    *,
    subject_environment: str | None,
    subject_service: str | None,
    now: float,
    max_clock_skew: float,
) -> ParsedMessage:
    """Validate an already decoded metrics message (see :func:`parse_message`)."""
    parsed = parsed if parsed is not None else ParsedMessage()
    observations = _read_envelope(document, parsed, subject_environment, subject_service)
    if observations is None:
        return parsed
    latest = now + max_clock_skew
    for index, item in enumerate(observations):
        _add_observation(parsed, index, item, latest)
    return parsed


def _read_envelope(
    document: Any,
    parsed: ParsedMessage,
    subject_environment: str | None,
    subject_service: str | None,
) -> list[Any] | None:
    """Fill the envelope of ``parsed`` and return the observations, or None when it is invalid."""
    if not isinstance(document, dict):
        parsed.rejections.append(
            Rejection(INVALID_ENVELOPE, "body", "expected a JSON object with service, "
                      "environment, version and observations")
        )
        return None
    names = (document.get("service"), document.get("environment"), document.get("version"))
    if names not in _VALID_NAMES or "schema_version" in document or "event_id" in document:
        error = _envelope_error(document)
        if error is not None:
            parsed.rejections.append(error)
            return None
        if len(_VALID_NAMES) >= MAX_CACHED_NAMES:
            _VALID_NAMES.clear()
        _VALID_NAMES.add(names)
    parsed.environment = document["environment"]
    parsed.service = document["service"]
    parsed.version = document["version"]
    if subject_environment is not None and (
        parsed.environment != subject_environment or parsed.service != subject_service
    ):
        parsed.rejections.append(
            Rejection(
                SUBJECT_MISMATCH,
                "subject",
                f"the body names {parsed.environment}/{parsed.service} but was published on "
                f"metrics.{subject_environment}.{subject_service}: publish on "
                f"metrics.{parsed.environment}.{parsed.service}",
            )
        )
        return None
    if "observations" in document:
        return _observation_list(document, parsed)
    single = {key: value for key, value in document.items() if key not in ENVELOPE_KEYS}
    return [single]


def _observation_list(document: dict[str, Any], parsed: ParsedMessage) -> list[Any] | None:
    extra = set(document) - ENVELOPE_KEYS - {"observations"}
    observations = document["observations"]
    if extra:
        message = f"unknown fields {sorted(extra)}: a batch has only {sorted(ENVELOPE_KEYS)} " \
                  "and observations"
        parsed.rejections.append(Rejection(INVALID_ENVELOPE, "body", message))
        return None
    if not isinstance(observations, list) or not 1 <= len(observations) <= MAX_OBSERVATIONS:
        parsed.rejections.append(
            Rejection(INVALID_ENVELOPE, "observations",
                      f"expected a list of 1 to {MAX_OBSERVATIONS} observations")
        )
        return None
    return observations


def _envelope_error(document: dict[str, Any]) -> Rejection | None:
    for name, pattern in (("service", NAME_PATTERN), ("environment", NAME_PATTERN)):
        value = document.get(name)
        if not isinstance(value, str) or not pattern.match(value):
            return Rejection(
                INVALID_ENVELOPE, name,
                f"missing or invalid {name} {value!r}: use 1-63 characters of lowercase "
                "letters, digits and '-', starting and ending with a letter or digit",
            )
    version = document.get("version")
    if not isinstance(version, str) or not VERSION_PATTERN.match(version) or ".." in version:
        return Rejection(
            INVALID_ENVELOPE, "version",
            f"missing or invalid version {version!r}: use 1-128 characters of letters, digits, "
            "'.', '_', '+' and '-', starting and ending with a letter or digit, without '..'",
        )
    if document.get("schema_version", 1) != 1:
        return Rejection(INVALID_ENVELOPE, "schema_version", "unsupported schema_version: use 1")
    event_id = document.get("event_id")
    if event_id is not None and not _is_uuid(event_id):
        return Rejection(INVALID_ENVELOPE, "event_id",
                         f"invalid event_id {event_id!r}: use a UUID, or leave it out")
    return None


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _add_observation(parsed: ParsedMessage, index: int, item: Any, latest: float) -> None:
    """Append one observation to ``parsed``, or a rejection with its reason."""
    kind = item.get("kind") if isinstance(item, dict) else None
    at: float | None = None
    if kind == "request":
        fast = _fast_request(item)
        if fast is not None:
            at = fast[0]
            if at <= latest:
                parsed.requests.append(fast)
                return
    elif kind == "health_check":
        fast_check = _fast_health_check(item)
        if fast_check is not None:
            at = fast_check[0]
            if at <= latest:
                parsed.health_checks.append(fast_check)
                return
    if at is None:
        at = _slow_path(parsed, index, item, kind, latest)
    if at is not None and at > latest:
        parsed.rejections.append(
            Rejection(
                FUTURE_TIMESTAMP, "at",
                f"timestamp is {at - latest:.0f} s past the allowed clock skew: check the "
                "producer's clock, or raise TRAVI_DETECTOR__MAX_CLOCK_SKEW_SECONDS",
                index, kind,
            )
        )


def _slow_path(
    parsed: ParsedMessage, index: int, item: Any, kind: Any, latest: float
) -> float | None:
    """Validate with the contract's pydantic models; return the time if it is still to check."""
    try:
        observation = _OBSERVATION.validate_python(item)
    except ValidationError as exc:
        parsed.rejections.append(_rejection(exc, index, kind))
        return None
    at = observation.at.timestamp()
    if at > latest:
        return at
    if isinstance(observation, RequestObservation):
        timed_out = observation.timed_out
        parsed.requests.append((at, observation.latency_ms, observation.is_error, timed_out))
    elif isinstance(observation, HealthCheckObservation):
        parsed.health_checks.append((at, observation.check, observation.ok, observation.check_id))
    elif isinstance(observation, BudgetObservation):
        parsed.budgets.append((at, observation.spent, observation.budget))
    return None


def _rejection(exc: ValidationError, index: int, kind: Any) -> Rejection:
    error = exc.errors()[0]
    if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        location = "kind"
    else:
        # The discriminated union puts the kind first: ("request", "latency_ms").
        location = ".".join(str(part) for part in error["loc"][1:] or error["loc"]) or "observation"
    message = error["msg"]
    value = error.get("input")
    if isinstance(value, float) and not math.isfinite(value):
        reason = NOT_FINITE
        message = f"must be a finite number, not {value}"
    elif "finite" in message:
        reason = NOT_FINITE
    elif error["type"] in {"greater_than_equal", "greater_than"}:
        reason = NEGATIVE
    else:
        reason = INVALID_FIELD
    return Rejection(reason, location, message, index, kind if isinstance(kind, str) else None)


def _parse_time(value: str) -> float | None:
    """Return an ISO 8601 timestamp with a zone as epoch seconds, or None to use the slow path."""
    if len(value) < _MIN_TIMESTAMP_LENGTH or value[4] != "-" or value[10] not in "Tt ":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def _fast_request(item: dict[str, Any]) -> tuple[float, float, bool, bool] | None:
    """Return ``(at, latency_ms, is_error, timed_out)`` for a plainly valid request, else None."""
    if not REQUEST_KEYS.issuperset(item):
        return None
    at = item.get("at")
    latency = item.get("latency_ms")
    status = item.get("status")
    ok = item.get("ok")
    timed_out = item.get("timed_out", False)
    if type(at) is not str or type(latency) not in _NUMBER or type(timed_out) is not bool:
        return None
    if type(ok) not in _OPTIONAL_BOOL:
        return None
    if status is not None and (type(status) is not int or not 100 <= status <= 599):
        return None
    latency = float(latency)
    if not 0.0 <= latency < math.inf:
        return None
    moment = _parse_time(at)
    if moment is None:
        return None
    is_error = timed_out or ok is False or (status is not None and status >= 500)
    return moment, latency, is_error, timed_out


def _fast_health_check(item: dict[str, Any]) -> tuple[float, str, bool, str | None] | None:
    """Return ``(at, check, ok, check_id)`` for a plainly valid health check, else None."""
    if not HEALTH_KEYS.issuperset(item):
        return None
    at = item.get("at")
    check = item.get("check")
    ok = item.get("ok")
    check_id = item.get("check_id")
    if type(at) is not str or type(check) is not str or type(ok) is not bool:
        return None
    if not 1 <= len(check) <= 100:
        return None
    if check_id is not None and (type(check_id) is not str or len(check_id) > 200):
        return None
    moment = _parse_time(at)
    if moment is None:
        return None
    return moment, check, ok, check_id
