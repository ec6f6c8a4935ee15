"""Pure executor logic: step policies, backoff, cancels, switch recovery, event ids, targets."""

from __future__ import annotations

import uuid

import pytest

from services.executor.drivers.base import Target, fill
from services.executor.drivers.registry import build_adapters, config_for, validate_all
from services.executor.errors import ConfigurationError
from services.executor.sequence import (
    DEFAULT_POLICIES,
    SwitchRecovery,
    backoff_delay,
    cancel_interrupts,
    event_id,
    recover_switch,
    resolve_policies,
)
from shared.contracts import STEP_NAMES
from shared.errors import InvalidName
from shared.settings import DriverConfig, ExecutorSettings, StepPolicy


def test_policies_default_and_override():
    override = StepPolicy(timeout_seconds=5, attempts=4, backoff_seconds=0.1)
    policies = resolve_policies({"drain_connections": override})
    assert list(policies) == list(STEP_NAMES)
    assert policies["drain_connections"] == override
    assert policies["switch_version"] == DEFAULT_POLICIES["switch_version"]


def test_policies_reject_unknown_step():
    with pytest.raises(ConfigurationError, match="unknown step drain"):
        resolve_policies({"drain": StepPolicy()})


def test_backoff_doubles():
    policy = StepPolicy(backoff_seconds=0.5, attempts=4)
    assert [backoff_delay(policy, n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_cancel_never_skips_resume_or_notify():
    assert cancel_interrupts("drain_connections")
    assert cancel_interrupts("switch_version")
    assert not cancel_interrupts("resume_traffic")
    assert not cancel_interrupts("notify")


@pytest.mark.parametrize(
    ("started", "idempotent", "switched", "expected"),
    [
        (False, False, None, SwitchRecovery.RUN),
        (True, True, None, SwitchRecovery.RUN),
        (True, False, True, SwitchRecovery.MARK_SUCCEEDED),
        (True, False, False, SwitchRecovery.FAIL),
        (True, False, None, SwitchRecovery.FAIL),
    ],
)
def test_recover_switch(started, idempotent, switched, expected):
    assert recover_switch(started=started, idempotent=idempotent, switched=switched) is expected


def test_event_id_is_deterministic():
    plan_id = uuid.uuid4()
    assert event_id(plan_id, "outcome") == event_id(str(plan_id), "outcome")
    assert event_id(plan_id, "outcome") != event_id(plan_id, "step/notify/1/running")
    assert event_id(plan_id, "outcome") != event_id(uuid.uuid4(), "outcome")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service", "../etc"),
        ("service", "a/b"),
        ("environment", "Prod"),
        ("to_version", "v1;rm"),
        ("to_version", "v1/../x"),
        ("from_version", "$(id)"),
    ],
)
def test_target_rejects_unsafe_names(field, value):
    values = {
        "environment": "production",
        "service": "checkout",
        "from_version": "v1.2.0",
        "to_version": "v1.1.0",
        field: value,
    }
    with pytest.raises(InvalidName):
        Target(**values)


def test_fill_replaces_placeholders_only():
    target = Target("production", "checkout", None, "v1.1.0+build.7")
    assert fill("{service}@{version} {other}", target) == "checkout@v1.1.0+build.7 {other}"
    assert fill("/v/{version}", target, for_url=True) == "/v/v1.1.0%2Bbuild.7"
    assert fill("{from_version}", target) == ""


def test_config_prefers_environment_key():
    settings = ExecutorSettings(
        services={
            "checkout": DriverConfig(driver="none"),
            "staging/checkout": DriverConfig(driver="command", options={"switch": ["true"]}),
        }
    )
    assert config_for(settings, "staging", "checkout")[0] == "staging/checkout"
    assert config_for(settings, "production", "checkout")[0] == "checkout"
    assert config_for(settings, "production", "cart")[0] == "default"
    assert build_adapters(settings, "staging", "checkout").driver.kind == "command"


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ({"Checkout": {}}, "invalid key"),
        ({"checkout": {"driver": "releases"}}, "root is missing"),
        (
            {"checkout": {"driver": "command", "options": {"switch": "deploy.sh {version}"}}},
            "list of strings",
        ),
        ({"checkout": {"driver": "http", "options": {"base_url": "ftp://x"}}}, "http"),
        (
            {"checkout": {"traffic": "command", "traffic_options": {"pause": ["true"]}}},
            "resume is missing",
        ),
        (
            {"checkout": {"driver": "command", "options": {"switch": ["{version}", "go"]}}},
            "without placeholders",
        ),
        ({"checkout": {"options": {"health_interval_seconds": "soon"}}}, "positive number"),
    ],
)
def test_invalid_driver_settings_fail_at_start(services, message):
    settings = ExecutorSettings.model_validate({"services": services})
    with pytest.raises(ConfigurationError, match=message):
        validate_all(settings)
