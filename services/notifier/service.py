"""Wiring of the notifier service: channels, delivery workers, the bus consumer and hooks."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from services.notifier.channels import Channel, SlackChannel, WebhookChannel
from services.notifier.consumer import EventConsumer
from services.notifier.delivery import ChannelWorker
from services.notifier.models import Delivery
from services.notifier.pruning import Pruner
from services.notifier.report_store import ReportChannel
from services.notifier.repository import DeliveryStore
from services.notifier.retry import AttemptResult, RetryPolicy
from services.notifier.routes import build_router
from services.notifier.routing import ConsumedEvent
from services.notifier.statuspage import StatuspageChannel
from shared.bus import EXECUTE_SUBJECT, ROLLBACK_STREAM, publish, subscribe
from shared.contracts import NotificationFailed
from shared.errors import ConfigurationError
from shared.names import subject
from shared.service import Service, ServiceContext
from shared.settings import NotifierSettings, Settings

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
DURABLE = "notifier"
# How long an event waits before the notifier handles it, seconds (see the consumer below).
SETTLE_SECONDS = 0.25
SUBJECTS = (
    "rollback.plan.>",
    EXECUTE_SUBJECT,
    "rollback.step.>",
    "rollback.outcome.>",
    "rollback.suppressed.>",
    "rollback.escalation.>",
)
# Namespace of the deterministic ids of NotificationFailed events.
FAILURE_NAMESPACE = uuid.UUID("5d0c3c1e-4b8f-4e4e-9a51-6f1f2b7c9d40")


def retry_policy(settings: NotifierSettings) -> RetryPolicy:
    """Return the retry policy every channel uses."""
    return RetryPolicy(
        max_attempts=settings.max_attempts,
        backoff_seconds=settings.backoff_seconds,
        backoff_max_seconds=settings.backoff_max_seconds,
        max_age_seconds=settings.max_delivery_age_seconds,
    )


def check_url(value: str, variable: str) -> None:
    """Raise ConfigurationError unless ``value`` is an http(s) URL; the value is not echoed,
    because webhook URLs are secrets."""
    parsed = urlsplit(value)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise ConfigurationError(
            f"{variable} is not an http(s) URL: set it to the full URL, such as "
            "https://hooks.slack.com/services/..."
        )


def build_channels(settings: NotifierSettings, store: DeliveryStore) -> list[Channel]:
    """Return the channels that are configured; a channel without its URL is off."""
    policy = retry_policy(settings)
    if settings.slack_webhook_url is not None:
        check_url(
            settings.slack_webhook_url.get_secret_value(), "TRAVI_NOTIFIER__SLACK_WEBHOOK_URL"
        )
    if settings.webhook_url is not None:
        check_url(settings.webhook_url.get_secret_value(), "TRAVI_NOTIFIER__WEBHOOK_URL")
    if settings.statuspage_page_id:
        check_url(settings.statuspage_api_url, "TRAVI_NOTIFIER__STATUSPAGE_API_URL")
    channels: list[Channel] = []
    if settings.slack_webhook_url is not None:
        channels.append(SlackChannel(
            settings.slack_webhook_url,
            kinds=settings.slack_events,
            channel=settings.slack_channel,
            min_interval=settings.slack_min_interval_seconds,
            timeout=settings.http_timeout_seconds,
            policy=policy,
        ))
    if settings.statuspage_page_id and settings.statuspage_api_key is not None:
        channels.append(StatuspageChannel(
            settings.statuspage_api_url,
            settings.statuspage_page_id,
            settings.statuspage_api_key,
            components=settings.statuspage_components,
            kinds=settings.statuspage_events,
            min_interval=settings.statuspage_min_interval_seconds,
            timeout=settings.http_timeout_seconds,
            policy=policy,
            store=store,
        ))
    elif settings.statuspage_page_id or settings.statuspage_api_key is not None:
        raise ConfigurationError(
            "the status page needs both TRAVI_NOTIFIER__STATUSPAGE_PAGE_ID and "
            "TRAVI_NOTIFIER__STATUSPAGE_API_KEY: set both, or neither to turn it off"
        )
    if settings.webhook_url is not None:
        if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
            raise ConfigurationError(
                "TRAVI_NOTIFIER__WEBHOOK_SECRET is missing: webhook requests are signed with "
                "HMAC-SHA256, so set a shared secret the receiver also knows"
            )
        channels.append(WebhookChannel(
            settings.webhook_url,
            settings.webhook_secret,
            kinds=settings.webhook_events,
            timeout=settings.http_timeout_seconds,
            policy=policy,
        ))
    return channels


def reports_directory(settings: Settings) -> Path:
    """Return where incident reports are written."""
    return settings.notifier.reports_dir or settings.state_dir / "reports"


def failure_event(delivery: Delivery, result: AttemptResult, reason: str) -> NotificationFailed:
    """Return the NotificationFailed event of a given-up delivery; its id is deterministic."""
    name = f"{delivery.channel}:{delivery.plan_key}:{delivery.notification_key}"
    return NotificationFailed(
        event_id=uuid.uuid5(FAILURE_NAMESPACE, name),
        environment=delivery.environment,
        service=delivery.service,
        plan_id=None if delivery.plan_key == "-" else uuid.UUID(delivery.plan_key),
        channel=delivery.channel,
        source_event_id=uuid.UUID(delivery.source_event_id),
        error=reason[:4000],
        status_code=result.status_code,
    )


def create(context: ServiceContext) -> Service:
    """Register the notifier's consumer on the broker and return the service."""
    settings = context.settings
    store = DeliveryStore(context.db)
    channels = build_channels(settings.notifier, store)
    reports = ReportChannel(
        reports_directory(settings),
        broker=context.broker,
        store=store,
        policy=retry_policy(settings.notifier),
        publish_timeout=settings.publish_timeout_seconds,
    )

    async def report_failure(delivery: Delivery, result: AttemptResult, reason: str) -> None:
        event = failure_event(delivery, result, reason)
        try:
            await publish(
                context.broker,
                subject("rollback.notification", delivery.environment, delivery.service),
                event,
                timeout=settings.publish_timeout_seconds,
            )
        except Exception:  # noqa: BLE001 - the failure is stored and logged; the bus may be down.
            logger.exception("Publishing NotificationFailed for %s failed.", delivery.channel)

    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    workers = {
        channel.name: ChannelWorker(
            channel,
            store,
            holder=holder,
            lease_seconds=settings.notifier.lease_seconds,
            poll_seconds=settings.notifier.poll_seconds,
            on_give_up=report_failure,
        )
        for channel in [*channels, reports]
    }
    consumer = EventConsumer(
        context.db,
        channels,
        reports,
        wake=lambda name: workers[name].wake(),
        settle_seconds=settings.notifier.settle_seconds,
    )
    subscribe(
        context.broker,
        subjects=SUBJECTS,
        stream=ROLLBACK_STREAM,
        durable=DURABLE,
        model=ConsumedEvent,
        handler=consumer.handle,
        # faststream handles the messages of one pull batch concurrently; one at a time keeps
        # the stream's order (started before finished). A rollback produces a few dozen events.
        batch_size=1,
        # A quarter second later in Slack is not noticed, and the planner and the executor
        # get the shared event loop to themselves in the milliseconds after a breach.
        settle_seconds=SETTLE_SECONDS,
        description="Rollback events to Slack, the status page, webhooks and incident reports.",
    )

    pruner = Pruner(store, settings.events_max_age_seconds)

    async def start() -> None:
        names = ", ".join(channel.name for channel in channels) or "none"
        logger.info("Notifier channels: %s; incident reports in %s.", names, reports.directory)
        for worker in workers.values():
            worker.start()
        pruner.start()

    async def stop() -> None:
        await pruner.stop()
        grace = settings.notifier.shutdown_grace_seconds
        await asyncio.gather(*(worker.stop(grace) for worker in workers.values()))
        for channel in [*channels, reports]:
            await channel.close()

    router = build_router(context)
    return Service(
        name="notifier", migrations=MIGRATIONS, router=router, on_start=[start], on_stop=[stop]
    )
