"""Event and command contracts carried over the bus, version 1.

Events are named in the past tense and commands in the imperative. Every message has an
``event_id`` (also its ``Nats-Msg-Id``, so a second publish is stored once), a
``schema_version`` and a UTC ``occurred_at``. Timestamps without a zone are rejected; others are
converted to UTC. Unknown fields are rejected so that a typo fails loudly at the consumer.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from shared.names import Name, Version

SCHEMA_VERSION = 1

Trigger = Literal["error_rate", "latency", "health_check", "budget_exceeded", "timeout", "alert"]
PlanTrigger = Literal[
    "error_rate", "latency", "health_check", "budget_exceeded", "timeout", "alert", "manual"
]
TriggerType = Literal["automatic", "manual"]
PlanStatus = Literal["pending", "in_progress", "completed", "failed", "cancelled"]
Outcome = Literal["completed", "failed", "cancelled"]
StepName = Literal[
    "validate_target",
    "pause_traffic",
    "drain_connections",
    "switch_version",
    "verify_health",
    "resume_traffic",
    "cleanup",
    "notify",
]
STEP_NAMES: tuple[StepName, ...] = (
    "validate_target",
    "pause_traffic",
    "drain_connections",
    "switch_version",
    "verify_health",
    "resume_traffic",
    "cleanup",
    "notify",
)
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped"]
SuppressionReason = Literal["cooldown", "in_progress", "no_target", "loop_guard"]
DeploymentStatus = Literal["started", "succeeded", "failed"]


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number, not NaN or infinity")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]
NonNegativeFloat = Annotated[float, Field(ge=0), AfterValidator(_finite)]


def _without_nul(value: str) -> str:
    # PostgreSQL text columns reject NUL, so a consumer would retry the insert until max_deliver.
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000): remove it")
    return value


# Free text that consumers store: any characters but NUL.
StoredText = Annotated[str, AfterValidator(_without_nul)]


class Contract(BaseModel):
    """Base of every message: strict, immutable, identified and timestamped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: UtcDatetime = Field(default_factory=utc_now)


# Metric events, published by the services being watched.


class RequestObservation(BaseModel):
    """One served request. It is an error when status is 5xx, it timed out, or ok is false."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["request"] = "request"
    at: UtcDatetime
    latency_ms: NonNegativeFloat
    status: int | None = Field(None, ge=100, le=599)
    ok: bool | None = None
    timed_out: bool = False

    @property
    def is_error(self) -> bool:
        """Whether the request counts as failed."""
        return (
            (self.status is not None and self.status >= 500)
            or self.timed_out
            or self.ok is False
        )


class HealthCheckObservation(BaseModel):
    """One health-check result; ``check_id`` identifies a result so a repeat counts once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["health_check"] = "health_check"
    at: UtcDatetime
    check: str = Field(min_length=1, max_length=100)
    ok: bool
    check_id: str | None = Field(None, max_length=200)


class BudgetObservation(BaseModel):
    """AI spend against its budget, in the same unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["budget"] = "budget"
    at: UtcDatetime
    spent: NonNegativeFloat
    budget: Annotated[float, Field(gt=0), AfterValidator(_finite)]


Observation = Annotated[
    RequestObservation | HealthCheckObservation | BudgetObservation, Field(discriminator="kind")
]


class MetricsReported(BaseModel):
    """A batch of observations from one version of one service (``metrics.<env>.<svc>``).

    ``event_id`` is optional for producers; the detector reads observations one by one so that
    one bad observation does not discard the valid ones beside it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: UUID | None = None
    service: Name
    environment: Name
    version: Version
    observations: list[Observation] = Field(min_length=1, max_length=10_000)


# Deployments, published by CI/CD, the CLI and the HTTP API.


class DeploymentRecorded(Contract):
    """A deployment of one version (``deployments.<env>.<svc>``)."""

    environment: Name
    service: Name
    version: Version
    status: DeploymentStatus
    actor: str = Field(min_length=1, max_length=200)
    deployed_at: UtcDatetime = Field(default_factory=utc_now)


# Rollback events.


class BreachDetected(Contract):
    """A trigger entered breach (``rollback.breach.<env>.<svc>``)."""

    environment: Name
    service: Name
    version: Version | None = None
    trigger: Trigger
    measured: FiniteFloat
    threshold: FiniteFloat
    window_seconds: NonNegativeFloat = 0.0
    samples: int = Field(0, ge=0)
    detected_at: UtcDatetime = Field(default_factory=utc_now)
    detail: str = Field("", max_length=2000)


class PlanCreated(Contract):
    """A rollback plan was stored as pending (``rollback.plan.<env>.<svc>``)."""

    plan_id: UUID
    environment: Name
    service: Name
    from_version: Version | None
    to_version: Version
    trigger: PlanTrigger
    trigger_type: TriggerType
    actor: StoredText = Field(min_length=1, max_length=200)
    reason: StoredText = Field("", max_length=2000)
    forced: bool = False
    created_at: UtcDatetime
    breach: BreachDetected | None = None


class ExecutePlan(Contract):
    """Command: run the plan (``rollback.execute``). It carries the plan it runs."""

    plan: PlanCreated
    actor: StoredText = Field(min_length=1, max_length=200)


class CancelPlan(Contract):
    """Command: cancel the plan (``rollback.cancel``), between steps or during the drain."""

    plan: PlanCreated
    actor: StoredText = Field(min_length=1, max_length=200)
    reason: StoredText = Field("", max_length=2000)


class StepChanged(Contract):
    """A step started or finished (``rollback.step.<env>.<svc>``)."""

    plan_id: UUID
    environment: Name
    service: Name
    step: StepName
    status: StepStatus
    attempt: int = Field(1, ge=1)
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration_ms: NonNegativeFloat | None = None
    error: str | None = Field(None, max_length=4000)


class PlanFinished(Contract):
    """A plan reached its outcome (``rollback.outcome.<env>.<svc>``)."""

    plan_id: UUID
    environment: Name
    service: Name
    from_version: Version | None
    to_version: Version
    trigger: PlanTrigger
    trigger_type: TriggerType
    outcome: Outcome
    started_at: UtcDatetime | None
    finished_at: UtcDatetime
    duration_ms: NonNegativeFloat | None
    failed_step: StepName | None = None
    error: str | None = Field(None, max_length=4000)
    actor: str = Field("system", max_length=200)


class BreachSuppressed(Contract):
    """A breach was not acted on (``rollback.suppressed.<env>.<svc>``)."""

    environment: Name
    service: Name
    reason: SuppressionReason
    breach: BreachDetected
    detail: str = Field("", max_length=2000)
    plan_id: UUID | None = None
    needs_manual_action: bool = False


class EscalationRaised(Contract):
    """People must act: a restored version breached during its watch period, and the like
    (``rollback.escalation.<env>.<svc>``)."""

    environment: Name
    service: Name
    plan_id: UUID | None = None
    reason: str = Field(min_length=1, max_length=200)
    detail: str = Field("", max_length=2000)


class IncidentReportStored(Contract):
    """The incident report of a finished plan (``rollback.report.<env>.<svc>``)."""

    plan_id: UUID
    environment: Name
    service: Name
    markdown: str = Field(max_length=200_000)


class NotificationFailed(Contract):
    """A channel gave up on a message (``rollback.notification.<env>.<svc>``)."""

    environment: Name
    service: Name
    plan_id: UUID | None = None
    channel: str = Field(max_length=50)
    source_event_id: UUID
    error: str = Field(max_length=4000)
    status_code: int | None = None


def new_id() -> UUID:
    """Return a fresh random identifier for a plan or an event."""
    return uuid4()
