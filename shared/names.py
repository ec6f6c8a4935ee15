"""Validation of names and versions, and the subjects built from them.

Environment and service names go into NATS subjects, file paths, commands and URLs, so they are
restricted to ``[a-z0-9-]``. Versions are freer (``v1.2.0``, ``2026.12.04+build.7``) but never
contain a path separator, ``..`` or a shell character.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from shared.errors import InvalidName

NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,126}[A-Za-z0-9])?$")

SUBJECT_KINDS = (
    "metrics",
    "deployments",
    "rollback.breach",
    "rollback.plan",
    "rollback.step",
    "rollback.outcome",
    "rollback.suppressed",
    "rollback.report",
    "rollback.escalation",
    "rollback.notification",
)


def validate_name(value: str, field: str = "name") -> str:
    """Return ``value`` if it is a valid environment or service name, else raise InvalidName."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidName(
            field,
            value,
            "use 1-63 characters of lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    return value


def validate_version(value: str, field: str = "version") -> str:
    """Return ``value`` if it is a valid version string, else raise InvalidName."""
    if not isinstance(value, str) or not VERSION_PATTERN.fullmatch(value) or ".." in value:
        raise InvalidName(
            field,
            value,
            "use 1-128 characters of letters, digits, '.', '_', '+' and '-', "
            "starting and ending with a letter or digit, without '..'",
        )
    return value


def _pydantic_name(value: str) -> str:
    try:
        return validate_name(value)
    except InvalidName as exc:
        raise ValueError(exc.hint) from None


def _pydantic_version(value: str) -> str:
    try:
        return validate_version(value)
    except InvalidName as exc:
        raise ValueError(exc.hint) from None


Name = Annotated[str, AfterValidator(_pydantic_name)]
Version = Annotated[str, AfterValidator(_pydantic_version)]


def subject(kind: str, environment: str, service: str) -> str:
    """Build ``<kind>.<env>.<svc>``, validating both names."""
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"unknown subject kind {kind!r}; expected one of {SUBJECT_KINDS}")
    return f"{kind}.{validate_name(environment, 'environment')}.{validate_name(service, 'service')}"


def parse_subject(value: str) -> tuple[str, str, str]:
    """Split ``<kind>.<env>.<svc>`` into its parts, validating the names."""
    kind, _, rest = value.rpartition(".")
    kind, _, environment = kind.rpartition(".")
    if kind not in SUBJECT_KINDS:
        raise InvalidName("subject", value, f"expected <kind>.<env>.<svc> with kind in {SUBJECT_KINDS}")
    return kind, validate_name(environment, "environment"), validate_name(rest, "service")
