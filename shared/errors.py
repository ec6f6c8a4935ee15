"""The error hierarchy shared by every TRAVI package."""

from __future__ import annotations


class TraviError(Exception):
    """Base of every error raised on purpose by TRAVI code."""


class InvalidName(TraviError, ValueError):
    """A name or version that may not reach a subject, path, command or URL."""

    def __init__(self, field: str, value: object, hint: str) -> None:
        self.field = field
        self.value = value
        self.hint = hint
        super().__init__(f"invalid {field} {value!r}: {hint}")


class ConfigurationError(TraviError):
    """A setting that is missing or inconsistent; the message names the variable."""


class NotFound(TraviError):
    """A plan, version or backup that does not exist."""


class Conflict(TraviError):
    """A request that contradicts stored state, such as a second rollback in progress."""
