"""The ``releases`` driver: ``<root>/releases/<version>/`` folders and a ``current`` link.

The switch writes a new symbolic link beside ``current`` and renames it over ``current``
(``os.replace``), so a reader sees the old or the new target and never a missing link. An
optional restart command runs after the switch, and ``health_url`` is probed for health.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.executor.drivers.base import (
    DeploymentDriver,
    HealthProbe,
    Target,
    argv_option,
    number_option,
    run_command,
)
from services.executor.errors import ConfigurationError, StepFailed

logger = logging.getLogger(__name__)

CURRENT_LINK = "current"
RELEASES_DIR = "releases"


class ReleasesDriver(DeploymentDriver):
    """Switches the ``current`` link of a releases folder and restarts the app.

    Options: ``root`` (the folder, required), ``restart`` (argument list, optional),
    ``restart_timeout_seconds`` (60), ``health_url``, ``health_expect``, and
    ``remove_failed_release`` (false; when true, cleanup deletes the bad version's folder).
    """

    kind = "releases"
    # The link is only replaced when it points elsewhere; restarting again is harmless.
    switch_is_idempotent = True

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        root = options.get("root")
        if not isinstance(root, str) or not root:
            raise ConfigurationError(
                f"{where}.root is missing: give the folder that contains releases/ and current"
            )
        self.root = Path(root)
        self.restart = argv_option(options, "restart", where)
        self.restart_timeout = number_option(options, "restart_timeout_seconds", 60.0, where)
        self.remove_failed = bool(options.get("remove_failed_release", False))
        self.health = HealthProbe(options, where)

    def release_dir(self, version: str) -> Path:
        """Return the folder of a (validated) version."""
        return self.root / RELEASES_DIR / version

    def current_version(self) -> str | None:
        """Return the version ``current`` points at, or None when there is no link."""
        link = self.root / CURRENT_LINK
        try:
            return Path(os.readlink(link)).name
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StepFailed(f"{link} is not a symbolic link: {exc.strerror}") from exc

    async def validate_target(self, target: Target) -> None:
        """Check that ``releases/<version>/`` exists and is not what ``current`` points at."""
        folder = self.release_dir(target.to_version)
        if not folder.is_dir():
            raise StepFailed(
                f"release folder {folder} not found: deploy {target.to_version} there first"
            )
        current = self.current_version()
        if current == target.to_version:
            raise StepFailed(f"{self.root / CURRENT_LINK} already points at {target.to_version}")

    async def switch(self, target: Target) -> None:
        """Point ``current`` at the target atomically (unless it does already), then restart."""
        if self.current_version() != target.to_version:
            await asyncio.to_thread(self._replace_link, target.to_version)
            logger.info("Switched %s to %s.", self.root / CURRENT_LINK, target.to_version)
        else:
            logger.info(
                "%s already points at %s; link left as it is.",
                self.root / CURRENT_LINK,
                target.to_version,
            )
        if self.restart is not None:
            await run_command(
                self.restart, target, cwd=str(self.root), timeout=self.restart_timeout
            )

    def _replace_link(self, version: str) -> None:
        link = self.root / CURRENT_LINK
        temporary = self.root / f".{CURRENT_LINK}.{uuid.uuid4().hex}"
        os.symlink(Path(RELEASES_DIR) / version, temporary)
        try:
            os.replace(temporary, link)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise

    async def is_switched(self, target: Target) -> bool | None:
        """Return whether ``current`` points at the target."""
        return self.current_version() == target.to_version

    async def check_health(self, target: Target) -> None:
        """Probe ``health_url``."""
        await self.health.check(target)

    async def cleanup(self, target: Target) -> None:
        """Delete the bad version's folder when ``remove_failed_release`` is set."""
        if not self.remove_failed or target.from_version is None:
            return
        if self.current_version() == target.from_version:
            raise StepFailed(
                f"not removing {target.from_version}: {self.root / CURRENT_LINK} points at it"
            )
        folder = self.release_dir(target.from_version)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        logger.info("Removed the failed release %s.", folder)
