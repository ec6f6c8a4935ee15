"""Secrets in channel errors: a webhook URL's secret part is its path, so that goes too."""

from __future__ import annotations

from pydantic import SecretStr

from services.notifier.channels import redact

SLACK_URL = SecretStr("https://hooks.slack.com/services/T000/B000/XXXXSECRET")


def test_redact_whole_url() -> None:
    text = redact(f"POST {SLACK_URL.get_secret_value()} failed", [SLACK_URL])

    assert "XXXXSECRET" not in text
    assert text == "POST *** failed"


def test_redact_url_path_alone() -> None:
    body = "The requested URL /services/T000/B000/XXXXSECRET was not found on this server"

    text = redact(body, [SLACK_URL])

    assert "XXXXSECRET" not in text
    assert text == "The requested URL *** was not found on this server"


def test_redact_query_string() -> None:
    url = SecretStr("https://example.com/hook?token=abc123")

    text = redact("rejected /hook?token=abc123 (bad token)", [url])

    assert "abc123" not in text


def test_redact_keeps_bare_host_text() -> None:
    url = SecretStr("https://example.com/")

    text = redact("example.com answered / with 500", [url])

    assert text == "example.com answered / with 500"


def test_redact_plain_secret_and_none() -> None:
    text = redact("key s3cr3t in body", [SecretStr("s3cr3t"), None])

    assert text == "key *** in body"
