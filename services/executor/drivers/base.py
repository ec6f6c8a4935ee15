"""The driver interfaces and the helpers every driver shares: placeholders, commands, probes.

Every value that reaches a path, a command or a URL comes from a :class:`Target`, whose names
and versions are validated again on construction with ``shared.names`` (no ``..``, no path
separator, no shell character). Commands are argument lists run without a shell.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
import os
import signal
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from services.executor.errors import ConfigurationError, StepFailed
from shared.contracts import PlanCreated
from shared.names import validate_name, validate_version

logger = logging.getLogger(__name__)

# Bytes of a failed command's output kept in the step's error.
OUTPUT_TAIL = 1000


@dataclass(frozen=True)
class Target:
    """The service, environment and versions of a rollback."""

    environment: str
    service: str
    from_version: str | None
    to_version: str

    def __post_init__(self) -> None:
        validate_name(self.environment, "environment")
        validate_name(self.service, "service")
        validate_version(self.to_version, "to_version")
        if self.from_version is not None:
            validate_version(self.from_version, "from_version")

    @classmethod
    def from_plan(cls, plan: PlanCreated) -> Target:
        """Build the target of a plan, validating its names and versions."""
        return cls(plan.environment, plan.service, plan.from_version, plan.to_version)

    def placeholders(self, *, for_url: bool = False) -> dict[str, str]:
        """Return the value of each placeholder, such as ``{service}`` and ``{version}``."""
        values = {
            "{environment}": self.environment,
            "{service}": self.service,
            "{version}": self.to_version,
            "{from_version}": self.from_version or "",
        }
        if for_url:
            values = {key: quote(value, safe="") for key, value in values.items()}
        return values


def fill(template: str, target: Target, *, for_url: bool = False) -> str:
    """Replace the placeholders in ``template``; other braces are left as they are."""
    result = template
    for key, value in target.placeholders(for_url=for_url).items():
        result = result.replace(key, value)
    return result


def argv_option(
    options: Mapping[str, Any], key: str, where: str, *, required: bool = False
) -> list[str] | None:
    """Return the argument list ``options[key]``, checking that it is a list of strings."""
    value = options.get(key)
    if value is None:
        if required:
            raise ConfigurationError(
                f"{where}.{key} is missing: give the command as a list of arguments"
            )
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) for item in value)
        or "{" in value[0]
    ):
        raise ConfigurationError(
            f"invalid {where}.{key} {value!r}: give a non-empty list of strings whose first item "
            'is a program without placeholders, such as ["systemctl", "restart", "app"] '
            "(commands run without a shell)"
        )
    return list(value)


def number_option(options: Mapping[str, Any], key: str, default: float, where: str) -> float:
    """Return the positive number ``options[key]``, or ``default``."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(
            f"invalid {where}.{key} {value!r}: give a positive number of seconds"
        )
    return float(value)


async def run_command(
    argv: Sequence[str],
    target: Target,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run ``argv`` with its placeholders filled, without a shell, and return its stdout.

    A non-zero exit raises :class:`StepFailed` with the end of stderr. When the caller is
    cancelled (the step timed out) or ``timeout`` passes, the command's process group is killed.
    """
    filled = [fill(item, target) for item in argv]
    process = await asyncio.create_subprocess_exec(
        *filled,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        _kill_group(process)
        await process.wait()
        if timeout is not None:
            logger.warning("Killed command %s after %s s or a cancel.", filled[0], timeout)
        raise
    if process.returncode != 0:
        tail = stderr.decode(errors="replace")[-OUTPUT_TAIL:].strip()
        detail = f": {tail}" if tail else " and wrote nothing to stderr"
        raise StepFailed(
            f"command {' '.join(filled)[:300]} exited with code {process.returncode}{detail}"
        )
    return stdout.decode(errors="replace")


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def http_client(timeout: float, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """Return a new HTTP client that reuses one TLS context per process.

    Building the context is what makes a new httpx client slow (about 70 ms each, measured on
    a 2-core machine with httpx 0.29), and drivers make a client per call.
    """
    return httpx.AsyncClient(timeout=timeout, headers=dict(headers or {}), verify=_ssl_context())


async def probe_http(
    client: httpx.AsyncClient, url: str, *, expect: str | None = None, method: str = "GET"
) -> httpx.Response:
    """Call ``url`` and return a 2xx response (containing ``expect`` when given), else raise."""
    try:
        response = await client.request(method, url)
    except httpx.HTTPError as exc:
        raise StepFailed(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        raise StepFailed(
            f"{method} {url} returned HTTP {response.status_code}: {response.text[:300]}"
        )
    if expect is not None and expect not in response.text:
        raise StepFailed(
            f"{method} {url} returned a body without {expect!r}: {response.text[:300]}"
        )
    return response


class HealthProbe:
    """The optional ``health_url`` / ``health_expect`` options shared by several drivers."""

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        self.url = options.get("health_url")
        self.expect = options.get("health_expect")
        for key in ("health_url", "health_expect"):
            value = options.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"invalid {where}.{key} {value!r}: give a string")
        self.timeout = number_option(options, "health_request_timeout_seconds", 5.0, where)

    async def check(self, target: Target) -> None:
        """Probe the health URL once; without one, report healthy and log it at debug level."""
        if self.url is None:
            logger.debug("No health_url configured for %s; health passes.", target.service)
            return
        expect = fill(self.expect, target) if self.expect else None
        async with http_client(self.timeout) as client:
            await probe_http(client, fill(self.url, target, for_url=True), expect=expect)


class DeploymentDriver(abc.ABC):
    """Puts a version of a service in place and reports on it."""

    kind: ClassVar[str]
    # True when calling switch() again after it took effect changes nothing, so a takeover may
    # call it again after an executor died inside it.
    switch_is_idempotent: bool = False

    @abc.abstractmethod
    async def validate_target(self, target: Target) -> None:
        """Raise StepFailed unless the target version exists and differs from the current one."""

    @abc.abstractmethod
    async def switch(self, target: Target) -> None:
        """Put the target version in place."""

    async def is_switched(self, target: Target) -> bool | None:
        """Whether the target version is in place; None when the driver cannot tell."""
        return None

    @abc.abstractmethod
    async def check_health(self, target: Target) -> None:
        """Probe the target's health once; raise StepFailed when it is not healthy."""

    async def cleanup(self, target: Target) -> None:  # noqa: B027 - optional hook.
        """Clean up after the bad version; nothing by default."""


class TrafficControl(abc.ABC):
    """Stops and restores the flow of new requests to a service."""

    kind: ClassVar[str]
    # Fixed wait of the drain when the control cannot count requests in flight, seconds.
    drain_seconds: float = 0.0

    @abc.abstractmethod
    async def pause(self, target: Target) -> None:
        """Stop new requests."""

    @abc.abstractmethod
    async def resume(self, target: Target) -> None:
        """Restore the flow of requests; calling it when traffic flows changes nothing."""

    async def in_flight(self, target: Target) -> int | None:
        """Return the number of requests still being served; None when it cannot tell."""
        return None
