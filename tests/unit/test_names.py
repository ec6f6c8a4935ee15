"""Subject helpers and name validation."""

from __future__ import annotations

import pytest

from shared.errors import InvalidName
from shared.names import parse_subject, subject, validate_name, validate_version


def test_subject_builds_kind_env_service():
    assert subject("metrics", "production", "checkout") == "metrics.production.checkout"
    assert subject("rollback.breach", "eu-west-1", "svc-2") == "rollback.breach.eu-west-1.svc-2"


def test_parse_subject_round_trip():
    assert parse_subject("rollback.outcome.production.checkout") == (
        "rollback.outcome", "production", "checkout")
    assert parse_subject("metrics.staging.api") == ("metrics", "staging", "api")


@pytest.mark.parametrize("name", [
    "", "Checkout", "check_out", "check.out", "check out", "-checkout", "checkout-", "a/b",
    "..", "x" * 64, "café", "a;rm", "$(id)", "*", ">", "checkout\n",
])
def test_invalid_names_rejected(name):
    with pytest.raises(InvalidName) as caught:
        validate_name(name, "service")
    assert caught.value.field == "service"
    assert "lowercase letters" in str(caught.value)


@pytest.mark.parametrize("name", ["a", "checkout", "eu-west-1", "x" * 63, "0"])
def test_valid_names_accepted(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("bad", ["metrics.production", "metrics.Prod.checkout",
                                 "unknown.production.checkout", "metrics.production.check*"])
def test_parse_subject_rejects_bad_subjects(bad):
    with pytest.raises(InvalidName):
        parse_subject(bad)


def test_subject_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown subject kind"):
        subject("secrets", "production", "checkout")


@pytest.mark.parametrize("version", ["v1.2.0", "2026.12.04+build.7", "1.0.0-rc_1", "abc123"])
def test_valid_versions_accepted(version):
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["", "../v1", "v1..2", "v1/2", "v1 2", "v1;ls", "$HOME",
                                     "-v1", "v1-", "`id`", "v1\n", "x" * 129])
def test_invalid_versions_rejected(version):
    with pytest.raises(InvalidName):
        validate_version(version)
