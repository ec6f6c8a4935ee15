"""The ``command`` driver: one argument list per step, run without a shell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.executor.drivers.base import (
    DeploymentDriver,
    Target,
    argv_option,
    number_option,
    run_command,
)
from services.executor.errors import ConfigurationError


class CommandDriver(DeploymentDriver):
    """Runs configured commands with ``{version}``, ``{from_version}``, ``{service}`` and
    ``{environment}`` placeholders.

    Options: ``switch`` (required), ``validate``, ``health`` (exit 0 is healthy), ``cleanup``,
    ``current`` (prints the version in place; lets a takeover confirm a switch), ``cwd``,
    ``env`` (extra environment variables), ``command_timeout_seconds`` (300), and
    ``switch_idempotent`` (false; true lets a takeover run the switch again).
    """

    kind = "command"

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        self.switch_argv = argv_option(options, "switch", where, required=True)
        self.validate_argv = argv_option(options, "validate", where)
        self.health_argv = argv_option(options, "health", where)
        self.cleanup_argv = argv_option(options, "cleanup", where)
        self.current_argv = argv_option(options, "current", where)
        self.cwd = options.get("cwd")
        env = options.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ConfigurationError(f"invalid {where}.env {env!r}: give an object of strings")
        self.env: dict[str, str] = env
        self.timeout = number_option(options, "command_timeout_seconds", 300.0, where)
        self.switch_is_idempotent = bool(options.get("switch_idempotent", False))

    async def _run(self, argv: list[str], target: Target) -> str:
        return await run_command(argv, target, cwd=self.cwd, env=self.env, timeout=self.timeout)

    async def validate_target(self, target: Target) -> None:
        """Run ``validate`` if set."""
        if self.validate_argv:
            await self._run(self.validate_argv, target)

    async def switch(self, target: Target) -> None:
        """Run ``switch``."""
        await self._run(self.switch_argv, target)  # type: ignore[arg-type]

    async def is_switched(self, target: Target) -> bool | None:
        """Compare what ``current`` prints with the target; None without ``current``."""
        if not self.current_argv:
            return None
        return (await self._run(self.current_argv, target)).strip() == target.to_version

    async def check_health(self, target: Target) -> None:
        """Run ``health`` if set."""
        if self.health_argv:
            await self._run(self.health_argv, target)

    async def cleanup(self, target: Target) -> None:
        """Run ``cleanup`` if set."""
        if self.cleanup_argv:
            await self._run(self.cleanup_argv, target)
