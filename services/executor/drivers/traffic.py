"""Traffic controls: ``none``, ``http`` (pause, resume and in-flight endpoints) and ``command``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from services.executor.drivers.base import (
    Target,
    TrafficControl,
    argv_option,
    fill,
    http_client,
    number_option,
    probe_http,
    run_command,
)
from services.executor.errors import ConfigurationError, StepFailed


def _drain_seconds(options: Mapping[str, Any], where: str) -> float:
    value = options.get("drain_seconds", 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(
            f"invalid {where}.drain_seconds {value!r}: give seconds, 0 or more"
        )
    return float(value)


def _parse_count(text: str, source: str) -> int:
    stripped = text.strip()
    try:
        count = int(stripped)
    except ValueError:
        raise StepFailed(
            f"{source} returned {stripped[:100]!r}, not a number of requests"
        ) from None
    if count < 0:
        raise StepFailed(f"{source} returned a negative number of requests: {count}")
    return count


class NoTraffic(TrafficControl):
    """No traffic control: pause and resume do nothing; the drain waits ``drain_seconds``."""

    kind = "none"

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        self.drain_seconds = _drain_seconds(options, where)

    async def pause(self, target: Target) -> None:
        """Do nothing."""

    async def resume(self, target: Target) -> None:
        """Do nothing."""

    async def in_flight(self, target: Target) -> int | None:
        """Return 0 unless a fixed drain is configured."""
        return None if self.drain_seconds else 0


class HttpTraffic(TrafficControl):
    """A load balancer or proxy with HTTP endpoints.

    Options: ``base_url`` (required), ``pause_path`` ("/pause/{environment}/{service}"),
    ``resume_path`` ("/resume/{environment}/{service}"), ``in_flight_path``
    ("/in-flight/{environment}/{service}", returning a number or ``{"in_flight": n}``; null
    turns it off), ``headers``, ``timeout_seconds`` (10), ``drain_seconds``.
    """

    kind = "http"

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        base_url = options.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"invalid {where}.base_url {base_url!r}: give an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.pause_path = str(options.get("pause_path", "/pause/{environment}/{service}"))
        self.resume_path = str(options.get("resume_path", "/resume/{environment}/{service}"))
        in_flight = options.get("in_flight_path", "/in-flight/{environment}/{service}")
        self.in_flight_path = None if in_flight is None else str(in_flight)
        self.headers = {str(k): str(v) for k, v in (options.get("headers") or {}).items()}
        self.timeout = number_option(options, "timeout_seconds", 10.0, where)
        self.drain_seconds = _drain_seconds(options, where)

    async def _call(self, method: str, path: str, target: Target) -> httpx.Response:
        async with http_client(self.timeout, self.headers) as client:
            return await probe_http(
                client, self.base_url + fill(path, target, for_url=True), method=method
            )

    async def pause(self, target: Target) -> None:
        """POST the pause endpoint."""
        await self._call("POST", self.pause_path, target)

    async def resume(self, target: Target) -> None:
        """POST the resume endpoint."""
        await self._call("POST", self.resume_path, target)

    async def in_flight(self, target: Target) -> int | None:
        """GET the in-flight endpoint."""
        if self.in_flight_path is None:
            return None
        response = await self._call("GET", self.in_flight_path, target)
        try:
            body = response.json()
        except ValueError:
            return _parse_count(response.text, "in-flight endpoint")
        if isinstance(body, dict):
            body = body.get("in_flight")
        return _parse_count(str(body), "in-flight endpoint")


class CommandTraffic(TrafficControl):
    """Commands that pause and resume traffic (``pause``, ``resume``, required), and count
    requests in flight (``in_flight``, printing a number), run without a shell."""

    kind = "command"

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        self.pause_argv = argv_option(options, "pause", where, required=True)
        self.resume_argv = argv_option(options, "resume", where, required=True)
        self.in_flight_argv = argv_option(options, "in_flight", where)
        self.timeout = number_option(options, "command_timeout_seconds", 60.0, where)
        self.drain_seconds = _drain_seconds(options, where)

    async def pause(self, target: Target) -> None:
        """Run ``pause``."""
        await run_command(self.pause_argv, target, timeout=self.timeout)  # type: ignore[arg-type]

    async def resume(self, target: Target) -> None:
        """Run ``resume``."""
        await run_command(self.resume_argv, target, timeout=self.timeout)  # type: ignore[arg-type]

    async def in_flight(self, target: Target) -> int | None:
        """Run ``in_flight`` and read its number."""
        if self.in_flight_argv is None:
            return None
        output = await run_command(self.in_flight_argv, target, timeout=self.timeout)
        return _parse_count(output, "in_flight command")
