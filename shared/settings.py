"""Every environment variable the system reads, in one place.

All variables share the prefix ``TRAVI_``. Nested sections use a double underscore, so
``TRAVI_DETECTOR__WINDOW_SECONDS=30`` sets ``Settings().detector.window_seconds``. Values that
are lists or mappings are given as JSON. A ``Settings`` object is created once by the entry point
(``travi up``, ``travi run``, a test) and passed down; no module reads the environment at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TRAVI_"

TriggerName = Literal["error_rate", "latency", "health_check", "budget_exceeded", "timeout"]


class TriggerThresholds(BaseModel):
    """Thresholds of the five triggers; ``None`` in an override keeps the default."""

    error_rate: float | None = None
    latency_ms: float | None = None
    health_check_failures: int | None = None
    budget_ratio: float | None = None
    timeout_ms: float | None = None
    # Share of requests at or past ``timeout_ms`` that counts as a breach.
    timeout_rate: float | None = None
    window_seconds: float | None = None
    min_samples: int | None = None


class DetectorSettings(BaseModel):
    """Sliding windows and trigger thresholds of the detector."""

    window_seconds: float = Field(60.0, gt=0, description="Sliding window length, seconds.")
    min_samples: int = Field(20, ge=1, description="Requests below which a window is 'no data'.")
    error_rate: float = Field(0.10, ge=0, le=1, description="Error share that breaches.")
    latency_ms: float = Field(5000.0, gt=0, description="P95 latency that breaches, ms.")
    health_check_failures: int = Field(3, ge=1, description="Consecutive failures that breach.")
    budget_ratio: float = Field(1.0, gt=0, description="spent / budget that breaches.")
    timeout_ms: float = Field(30000.0, gt=0, description="Latency at or past which a request timed out, ms.")
    timeout_rate: float = Field(
        0.0, ge=0, le=1, description="Share of timed-out requests that breaches (0: any one)."
    )
    max_clock_skew_seconds: float = Field(
        300.0, ge=0, description="Observations further in the future than this are rejected."
    )
    max_samples_per_window: int = Field(
        100_000, ge=100, description="Samples kept per window; the oldest are dropped first."
    )
    overrides: dict[str, TriggerThresholds] = Field(
        default_factory=dict,
        description='Per "<env>/<svc>" or "<env>/*" thresholds, as JSON.',
    )
    environment_label: str = Field("environment", description="Alert label naming the env.")
    service_label: str = Field("service", description="Alert label naming the service.")
    version_label: str = Field("version", description="Alert label naming the version.")
    consumer_name: str = Field(
        "detector",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Durable consumer on the metrics stream; give each replica its own.",
    )
    fetch_batch: int = Field(1000, ge=1, le=10_000, description="Messages pulled per fetch.")
    max_windows: int = Field(
        10_000, ge=1, description="Windows kept; the least recently updated go first."
    )


class PlannerSettings(BaseModel):
    """Cooldowns and the loop guard of the planner."""

    cooldown_seconds: dict[str, float] = Field(
        default_factory=lambda: {
            "error_rate": 300.0,
            "latency": 300.0,
            "health_check": 60.0,
            "budget_exceeded": 3600.0,
            "timeout": 300.0,
            "alert": 300.0,
        },
        description="Cooldown per trigger, seconds.",
    )
    cooldown_overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict, description='Per "<env>/<svc>" cooldowns by trigger, seconds.'
    )
    loop_guard_max_per_hour: int = Field(
        2, ge=1, description="Automatic rollbacks per service and environment per hour."
    )
    outbox_relay_seconds: float = Field(
        5.0,
        gt=0,
        description=(
            "Interval of the background loop that retries events left unpublished and "
            "re-checks breaches deferred by a cooldown, seconds."
        ),
    )


class StepPolicy(BaseModel):
    """Timeout and retry policy of one executor step."""

    timeout_seconds: float = Field(30.0, gt=0)
    attempts: int = Field(1, ge=1)
    backoff_seconds: float = Field(0.5, ge=0)


class DriverConfig(BaseModel):
    """Deployment driver and traffic control of one service, chosen in configuration."""

    driver: Literal["releases", "command", "http", "git", "none"] = "none"
    options: dict[str, Any] = Field(default_factory=dict)
    traffic: Literal["none", "http", "command"] = "none"
    traffic_options: dict[str, Any] = Field(default_factory=dict)
    backup_before_switch: bool = False


class ExecutorSettings(BaseModel):
    """Step policies, heartbeats and deployment drivers of the executor."""

    steps: dict[str, StepPolicy] = Field(default_factory=dict, description="Per-step policies.")
    heartbeat_seconds: float = Field(2.0, gt=0, description="Heartbeat of a running plan.")
    stale_after_seconds: float = Field(10.0, gt=0, description="Heartbeat age that is stale.")
    ack_wait_seconds: float = Field(30.0, gt=0, description="JetStream ack wait of commands.")
    watch_seconds: float = Field(0.0, ge=0, description="Watch period after completion (0: off).")
    services: dict[str, DriverConfig] = Field(
        default_factory=dict, description='Driver per "<env>/<svc>" or "<svc>", as JSON.'
    )


NotificationKind = Literal[
    "created", "started", "step", "completed", "failed", "cancelled", "suppressed", "escalation"
]
NOTIFICATION_KINDS: tuple[NotificationKind, ...] = (
    "created", "started", "step", "completed", "failed", "cancelled", "suppressed", "escalation"
)


class NotifierSettings(BaseModel):
    """Channels of the notifier, what each one receives, and how deliveries are retried."""

    slack_webhook_url: SecretStr | None = None
    slack_channel: str = "#incidents"
    slack_min_interval_seconds: float = Field(1.0, ge=0)
    slack_events: list[NotificationKind] = Field(
        default_factory=lambda: ["started", "completed", "failed", "cancelled", "escalation"],
        description="Notification kinds posted to Slack, as JSON.",
    )
    statuspage_api_url: str = "https://api.statuspage.io/v1"
    statuspage_page_id: str | None = None
    statuspage_api_key: SecretStr | None = None
    statuspage_components: dict[str, str] = Field(
        default_factory=dict, description='Component id per "<env>/<svc>" or "<svc>".'
    )
    statuspage_min_interval_seconds: float = Field(1.0, ge=0)
    statuspage_events: list[NotificationKind] = Field(
        default_factory=lambda: ["started", "completed", "failed", "cancelled"],
        description="Notification kinds that open or update a status-page incident, as JSON.",
    )
    webhook_url: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    webhook_events: list[NotificationKind] = Field(
        default_factory=lambda: list(NOTIFICATION_KINDS),
        description="Notification kinds posted to the generic webhook, as JSON.",
    )
    max_attempts: int = Field(5, ge=1, description="Attempts per message, not counting 429s.")
    backoff_seconds: float = Field(0.5, ge=0, description="First retry delay, doubled each time.")
    backoff_max_seconds: float = Field(60.0, gt=0, description="Maximum retry delay, seconds.")
    max_delivery_age_seconds: float = Field(
        3600.0, gt=0, description="Age after which an undelivered message is given up."
    )
    http_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one HTTP request.")
    lease_seconds: float = Field(
        30.0, gt=0, description="Lease of a channel's worker, so one replica sends at a time."
    )
    poll_seconds: float = Field(1.0, gt=0, description="How often an idle worker looks for work.")
    settle_seconds: float = Field(
        0.5,
        ge=0,
        description="Wait before a new message is sent, so that events of one plan handled out "
        "of order (by two replicas) are still sent in order, seconds.",
    )
    shutdown_grace_seconds: float = Field(
        5.0, ge=0, description="Time a request in flight gets to finish at shutdown."
    )
    reports_dir: Path | None = Field(None, description="Incident reports (default <state>/reports).")


class BackupSettings(BaseModel):
    """Database backups of the application being rolled back."""

    database_url: SecretStr | None = Field(None, description="Database to back up.")
    directory: Path | None = Field(None, description="Backup folder (default <state>/backups).")
    keep: int = Field(10, ge=1, description="Newest backups kept.")
    timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="Time limit of one pg_dump, pg_restore or psql run, or of an SQLite lock "
        "wait, seconds.",
    )


class Settings(BaseSettings):
    """Top-level configuration of every TRAVI process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
    )

    state_dir: Path = Field(Path(".travi"), description="Embedded state: NATS data, SQLite, token.")
    nats_url: str | None = Field(None, description="NATS URL; unset starts an embedded server.")
    database_url: SecretStr | None = Field(None, description="SQLAlchemy URL; unset uses SQLite.")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535, description="0 picks a free port.")
    api_url: str | None = Field(None, description="Base URL the CLI calls.")
    token: SecretStr | None = Field(None, description="Bearer token the CLI sends.")
    tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Roles by bearer token, as JSON: {"<token>": "operator"}.',
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "text", "json"] = "auto"
    trace_exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None
    publish_timeout_seconds: float = Field(5.0, gt=0)
    metrics_max_age_seconds: float = Field(3600.0, gt=0, description="Metrics stream retention.")
    events_max_age_seconds: float = Field(
        30 * 86400.0, gt=0, description="Rollback events stream retention."
    )
    duplicate_window_seconds: float = Field(120.0, gt=0)

    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    notifier: NotifierSettings = Field(default_factory=NotifierSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)

    def resolved_database_url(self) -> str:
        """Return the configured database URL, or the SQLite file in the state folder."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.state_dir / 'travi.db').resolve()}"
