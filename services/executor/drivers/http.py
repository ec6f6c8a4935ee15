"""The ``http`` driver: a deployer's HTTP API, one call per step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from services.executor.drivers.base import (
    DeploymentDriver,
    Target,
    fill,
    http_client,
    number_option,
)
from services.executor.errors import ConfigurationError, StepFailed

# Method and path of each call; "{service}" and the other placeholders are URL-quoted.
DEFAULT_ENDPOINTS: dict[str, tuple[str, str]] = {
    "validate": ("POST", "/services/{environment}/{service}/validate"),
    "switch": ("POST", "/services/{environment}/{service}/switch"),
    "health": ("GET", "/services/{environment}/{service}/health"),
    "cleanup": ("POST", "/services/{environment}/{service}/cleanup"),
    "current": ("GET", "/services/{environment}/{service}/current"),
}


class HttpDriver(DeploymentDriver):
    """Calls a deployer: POST validate, switch and cleanup with the target as JSON, GET health.

    Options: ``base_url`` (required), ``endpoints`` (``{"switch": ["PUT", "/path"]}`` and so on;
    ``null`` turns a call off), ``headers``, ``timeout_seconds`` (30), and ``switch_idempotent``
    (false; true when the deployer's switch changes nothing the second time). ``current``
    returns ``{"version": "..."}`` and lets a takeover confirm a switch.
    """

    kind = "http"

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        base_url = options.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"invalid {where}.base_url {base_url!r}: give an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.endpoints: dict[str, tuple[str, str] | None] = dict(DEFAULT_ENDPOINTS)
        for name, value in (options.get("endpoints") or {}).items():
            if name not in DEFAULT_ENDPOINTS:
                raise ConfigurationError(
                    f"invalid {where}.endpoints key {name!r}: use {', '.join(DEFAULT_ENDPOINTS)}"
                )
            if value is not None and not (
                isinstance(value, list | tuple)
                and len(value) == 2
                and all(isinstance(v, str) for v in value)
            ):
                raise ConfigurationError(
                    f'invalid {where}.endpoints.{name} {value!r}: give ["METHOD", "/path"] or null'
                )
            self.endpoints[name] = (value[0], value[1]) if value is not None else None
        self.headers = {str(k): str(v) for k, v in (options.get("headers") or {}).items()}
        self.timeout = number_option(options, "timeout_seconds", 30.0, where)
        self.switch_is_idempotent = bool(options.get("switch_idempotent", False))

    async def _call(self, name: str, target: Target) -> httpx.Response | None:
        endpoint = self.endpoints[name]
        if endpoint is None:
            return None
        method, path = endpoint
        url = self.base_url + fill(path, target, for_url=True)
        body = {
            "environment": target.environment,
            "service": target.service,
            "version": target.to_version,
            "from_version": target.from_version,
        }
        async with http_client(self.timeout, self.headers) as client:
            try:
                if method.upper() == "GET":
                    response = await client.get(url)
                else:
                    response = await client.request(method.upper(), url, json=body)
            except httpx.HTTPError as exc:
                raise StepFailed(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise StepFailed(
                f"{method} {url} returned HTTP {response.status_code}: {response.text[:300]}"
            )
        return response

    async def validate_target(self, target: Target) -> None:
        """Ask the deployer to validate the target."""
        await self._call("validate", target)

    async def switch(self, target: Target) -> None:
        """Ask the deployer to switch to the target."""
        await self._call("switch", target)

    async def is_switched(self, target: Target) -> bool | None:
        """Compare the deployer's current version with the target."""
        response = await self._call("current", target)
        if response is None:
            return None
        try:
            return response.json().get("version") == target.to_version
        except ValueError:
            return None

    async def check_health(self, target: Target) -> None:
        """Ask the deployer for the target's health."""
        await self._call("health", target)

    async def cleanup(self, target: Target) -> None:
        """Ask the deployer to clean up the bad version."""
        await self._call("cleanup", target)
