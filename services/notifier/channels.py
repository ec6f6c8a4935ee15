"""The channels a notification can go to, and the interface the delivery workers use.

A channel turns a notification into a stored payload when the event is consumed (``prepare``,
no I/O) and sends a stored payload later (``send``, one HTTP request, no retries of its own:
the worker retries). Secrets such as webhook URLs are kept as ``SecretStr`` and removed from
every error text a channel returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from slack_sdk.webhook import WebhookClient

from services.notifier.models import Delivery
from services.notifier.retry import AttemptResult, RetryPolicy
from services.notifier.routing import Notification, NotifierEvent
from services.notifier.slack_blocks import build_message
from shared.contracts import StepChanged
from shared.settings import NotificationKind

# slack_sdk logs the webhook URL at DEBUG and every failure at ERROR; the worker logs failures
# itself, without the URL, so the SDK's own logger is kept quiet.
_SLACK_SDK_LOGGER = logging.getLogger("services.notifier.slack_sdk")
_SLACK_SDK_LOGGER.setLevel(logging.CRITICAL)

SIGNATURE_HEADER = "X-Travi-Signature"
TIMESTAMP_HEADER = "X-Travi-Timestamp"
EVENT_ID_HEADER = "X-Travi-Event-Id"
EVENT_TYPE_HEADER = "X-Travi-Event-Type"


class Channel(Protocol):
    """Interface of a channel, as the delivery workers use it."""

    name: str
    kinds: frozenset[NotificationKind]
    min_interval: float
    coalesces: bool
    policy: RetryPolicy

    def prepare(
        self, notification: Notification, history: Sequence[NotifierEvent]
    ) -> dict[str, Any] | None:
        """Return the payload to store, or None when the channel has nothing to send."""

    async def send(self, delivery: Delivery) -> AttemptResult:
        """Make one attempt to deliver a stored payload."""

    async def close(self) -> None:
        """Release connections."""


def redact(text: str, secrets: Collection[SecretStr | None]) -> str:
    """Return ``text`` with every secret value replaced by ``***``.

    A secret URL is also removed by its path and query alone, because that is the secret part
    of a Slack webhook URL, and a server or proxy may echo it back without the host.
    """
    forms: list[str] = []
    for secret in secrets:
        if secret is not None and secret.get_secret_value():
            forms.extend(_secret_forms(secret.get_secret_value()))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _secret_forms(value: str) -> list[str]:
    parts = urlsplit(value)
    if not (parts.scheme and parts.netloc):
        return [value]
    path_and_query = value[len(f"{parts.scheme}://{parts.netloc}") :]
    return [value, path_and_query] if len(path_and_query) > 1 else [value]


def transport_error(exc: BaseException, secrets: Collection[SecretStr | None]) -> AttemptResult:
    """Describe a request that got no response, without secrets."""
    return AttemptResult(None, error=redact(f"{type(exc).__name__}: {exc}", secrets)[:1000])


class SlackChannel:
    """Slack incoming webhook, sent with slack_sdk's ``WebhookClient``."""

    name = "slack"
    coalesces = True

    def __init__(
        self,
        url: SecretStr,
        *,
        kinds: Collection[NotificationKind],
        channel: str | None,
        min_interval: float,
        timeout: float,
        policy: RetryPolicy,
    ) -> None:
        self._url = url
        self.kinds = frozenset(kinds)
        self.slack_channel = channel
        self.min_interval = min_interval
        self.policy = policy
        # urllib-based client; the calls run in a worker thread. Its own retries are off.
        self._client = WebhookClient(
            url.get_secret_value(),
            timeout=max(1, round(timeout)),
            retry_handlers=[],
            logger=_SLACK_SDK_LOGGER,
        )

    def prepare(
        self, notification: Notification, history: Sequence[NotifierEvent]
    ) -> dict[str, Any] | None:
        """Build the Block Kit message; progress messages list every step so far."""
        steps = [event for event in history if isinstance(event, StepChanged)]
        return build_message(notification, channel=self.slack_channel, steps=steps)

    async def send(self, delivery: Delivery) -> AttemptResult:
        """Post the stored message once."""
        body = json.loads(delivery.payload)
        try:
            response = await asyncio.to_thread(self._client.send_dict, body)
        except Exception as exc:  # noqa: BLE001 - urllib raises many kinds; all are retried.
            return transport_error(exc, [self._url])
        return AttemptResult(
            response.status_code,
            headers=dict(response.headers or {}),
            body=redact(str(response.body or ""), [self._url]),
        )

    async def close(self) -> None:
        """Nothing to release: urllib opens a connection per request."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Return ``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` matches; receivers should also reject old timestamps."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    """A generic webhook: the event as JSON, signed with HMAC-SHA256.

    Each request carries ``X-Travi-Timestamp`` (Unix seconds at sending) and
    ``X-Travi-Signature: sha256=<hex>``, the HMAC-SHA256 with the shared secret of the
    timestamp, a ``.``, and the exact request body bytes. Signing the timestamp lets a receiver
    reject replayed requests. ``X-Travi-Event-Id`` and ``X-Travi-Event-Type`` name the event.
    """

    name = "webhook"
    coalesces = False
    min_interval = 0.0

    def __init__(
        self,
        url: SecretStr,
        secret: SecretStr,
        *,
        kinds: Collection[NotificationKind],
        timeout: float,
        policy: RetryPolicy,
    ) -> None:
        self._url = url
        self._secret = secret
        self.kinds = frozenset(kinds)
        self.policy = policy
        self._http = httpx.AsyncClient(timeout=timeout)

    def prepare(
        self, notification: Notification, history: Sequence[NotifierEvent]
    ) -> dict[str, Any] | None:
        """Wrap the event with its type and notification kind."""
        event = notification.event
        return {
            "type": type(event).__name__,
            "kind": notification.kind,
            "event": event.model_dump(mode="json"),
        }

    async def send(self, delivery: Delivery) -> AttemptResult:
        """Post the signed JSON once."""
        document = json.loads(delivery.payload)
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret.get_secret_value().encode(), timestamp, body),
            EVENT_ID_HEADER: delivery.source_event_id,
            EVENT_TYPE_HEADER: str(document.get("type", "")),
        }
        try:
            response = await self._http.post(
                self._url.get_secret_value(), content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            return transport_error(exc, [self._url, self._secret])
        return AttemptResult(
            response.status_code,
            headers=dict(response.headers),
            body=redact(response.text[:2000], [self._url, self._secret]),
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
