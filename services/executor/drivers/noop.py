"""The ``none`` driver: switches nothing, so a plan runs end to end without configuration."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from services.executor.drivers.base import DeploymentDriver, HealthProbe, Target

logger = logging.getLogger(__name__)


class NoopDriver(DeploymentDriver):
    """Accepts every target and switches nothing; probes ``health_url`` when one is set."""

    kind = "none"
    switch_is_idempotent = True

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        self.health = HealthProbe(options, where)

    async def validate_target(self, target: Target) -> None:
        """Accept any valid target."""

    async def switch(self, target: Target) -> None:
        """Log the switch that a configured driver would make."""
        logger.info(
            "Driver none: nothing switched for %s in %s (target %s); configure a driver in "
            "TRAVI_EXECUTOR__SERVICES to change a deployment.",
            target.service,
            target.environment,
            target.to_version,
        )

    async def check_health(self, target: Target) -> None:
        """Probe ``health_url`` if set."""
        await self.health.check(target)
