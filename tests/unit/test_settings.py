"""Settings: the environment is read when Settings() is created, secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def test_nested_variables_and_json(monkeypatch):
    monkeypatch.setenv("TRAVI_DETECTOR__WINDOW_SECONDS", "30")
    monkeypatch.setenv("TRAVI_TOKENS", '{"abc": "viewer"}')
    monkeypatch.setenv("TRAVI_NOTIFIER__SLACK_WEBHOOK_URL", "http://127.0.0.1:9/hook-secret")
    settings = Settings()
    assert settings.detector.window_seconds == 30
    assert settings.tokens["abc"].get_secret_value() == "viewer"
    assert "hook-secret" not in repr(settings)
    assert "hook-secret" not in str(settings.model_dump())


def test_default_database_is_sqlite_in_state_dir(tmp_path):
    settings = Settings(state_dir=tmp_path)
    assert settings.resolved_database_url() == f"sqlite+aiosqlite:///{Path(tmp_path).resolve()}/travi.db"


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("TRAVI_HTTP_PORT", "eighty")
    with pytest.raises(ValidationError, match="http_port"):
        Settings()
