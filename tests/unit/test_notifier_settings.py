"""Channel configuration: which channels start, and clear errors for bad settings."""

from __future__ import annotations

import pytest

from services.notifier.repository import DeliveryStore
from services.notifier.service import build_channels
from shared.errors import ConfigurationError
from shared.settings import NotifierSettings

SECRET_URL = "https://hooks.slack.com/services/T000/B000/very-secret"


def channels(**values: object) -> list[str]:
    settings = NotifierSettings.model_validate(values)
    return [channel.name for channel in build_channels(settings, DeliveryStore(None))]


def test_no_settings_no_channels():
    assert channels() == []


def test_all_channels_configured():
    names = channels(
        slack_webhook_url=SECRET_URL,
        statuspage_page_id="page1",
        statuspage_api_key="key",
        webhook_url="https://example.test/hook",
        webhook_secret="s3cret",
    )
    assert names == ["slack", "statuspage", "webhook"]


def test_default_filters():
    settings = NotifierSettings()
    assert settings.slack_events == ["started", "completed", "failed", "cancelled", "escalation"]
    assert settings.statuspage_events == ["started", "completed", "failed", "cancelled"]
    assert "step" in settings.webhook_events


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="slack_events"):
        NotifierSettings.model_validate({"slack_events": ["started", "progress"]})


def test_bad_slack_url_not_echoed():
    with pytest.raises(ConfigurationError, match="SLACK_WEBHOOK_URL") as caught:
        channels(slack_webhook_url="hooks.slack.com/services/very-secret")
    assert "very-secret" not in str(caught.value)


def test_webhook_needs_secret():
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET"):
        channels(webhook_url="https://example.test/hook")


def test_statuspage_needs_page_and_key():
    with pytest.raises(ConfigurationError, match="STATUSPAGE_API_KEY"):
        channels(statuspage_page_id="page1")


def test_statuspage_page_id_checked():
    with pytest.raises(ConfigurationError, match="STATUSPAGE_PAGE_ID"):
        channels(statuspage_page_id="../admin", statuspage_api_key="key")


def test_secrets_hidden_in_repr():
    settings = NotifierSettings.model_validate(
        {"slack_webhook_url": SECRET_URL, "webhook_secret": "s3cret"}
    )
    assert "very-secret" not in repr(settings)
    assert "s3cret" not in repr(settings)
