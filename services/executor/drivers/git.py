"""The ``git`` driver: revert the commits between the target and the bad version, then push.

The driver owns a working clone (``repository``): each switch fetches, resets the branch to
the remote's, reverts ``<target>..<bad>`` in one commit and pushes. A branch whose tree is
already the target's is left as it is, so a second switch changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.executor.drivers.base import (
    DeploymentDriver,
    HealthProbe,
    Target,
    fill,
    number_option,
    run_command,
)
from services.executor.errors import ConfigurationError, StepFailed


class GitDriver(DeploymentDriver):
    """Reverts a repository to the tree of the target version and pushes it.

    Options: ``repository`` (a working clone, required), ``remote`` ("origin"), ``branch``
    ("main"), ``ref_template`` ("{version}": the tag or ref of a version), ``author_name``,
    ``author_email``, ``git_timeout_seconds`` (120), ``health_url``, ``health_expect``.
    """

    kind = "git"
    switch_is_idempotent = True

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        repository = options.get("repository")
        if not isinstance(repository, str) or not repository:
            raise ConfigurationError(
                f"{where}.repository is missing: give the path of a working clone"
            )
        self.repository = str(Path(repository))
        self.remote = self._plain(options.get("remote", "origin"), f"{where}.remote")
        self.branch = self._plain(options.get("branch", "main"), f"{where}.branch")
        self.ref_template = str(options.get("ref_template", "{version}"))
        if self.ref_template.startswith("-"):
            raise ConfigurationError(
                f"invalid {where}.ref_template {self.ref_template!r}: it may not start with '-'"
            )
        self.env = {
            "GIT_AUTHOR_NAME": str(options.get("author_name", "TRAVI rollback")),
            "GIT_AUTHOR_EMAIL": str(options.get("author_email", "travi@localhost")),
            "GIT_COMMITTER_NAME": str(options.get("author_name", "TRAVI rollback")),
            "GIT_COMMITTER_EMAIL": str(options.get("author_email", "travi@localhost")),
            "GIT_TERMINAL_PROMPT": "0",
        }
        self.timeout = number_option(options, "git_timeout_seconds", 120.0, where)
        self.health = HealthProbe(options, where)

    @staticmethod
    def _plain(value: object, where: str) -> str:
        if not isinstance(value, str) or not value or value.startswith("-") or ".." in value:
            raise ConfigurationError(f"invalid {where} {value!r}: give a plain git name")
        return value

    async def _git(self, *args: str, target: Target) -> str:
        argv = ["git", "-C", self.repository, *args]
        return (await run_command(argv, target, env=self.env, timeout=self.timeout)).strip()

    def _ref(self, version: str, target: Target) -> str:
        return fill(self.ref_template.replace("{version}", version), target)

    async def _commit(self, ref: str, target: Target) -> str:
        try:
            return await self._git(
                "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}", target=target
            )
        except StepFailed as exc:
            raise StepFailed(f"git ref {ref!r} not found in {self.repository}: {exc}") from exc

    async def _tree(self, ref: str, target: Target) -> str:
        return await self._git(
            "rev-parse", "--verify", "--end-of-options", f"{ref}^{{tree}}", target=target
        )

    async def _bad_commit(self, target: Target) -> str:
        if target.from_version is None:
            return await self._commit(f"{self.remote}/{self.branch}", target)
        return await self._commit(self._ref(target.from_version, target), target)

    async def validate_target(self, target: Target) -> None:
        """Check that the target's ref exists, precedes the bad version and differs from the
        branch."""
        await self._git("fetch", "--tags", self.remote, target=target)
        good = await self._commit(self._ref(target.to_version, target), target)
        bad = await self._bad_commit(target)
        try:
            await self._git("merge-base", "--is-ancestor", good, bad, target=target)
        except StepFailed as exc:
            raise StepFailed(
                f"{target.to_version} ({good[:12]}) is not an ancestor of the bad version "
                f"({bad[:12]})"
            ) from exc
        if await self.is_switched(target):
            raise StepFailed(
                f"{self.remote}/{self.branch} already has the tree of {target.to_version}"
            )

    async def switch(self, target: Target) -> None:
        """Revert ``<target>..<bad>`` in one commit on the branch and push it."""
        await self._git("fetch", "--tags", self.remote, target=target)
        await self._git(
            "checkout", "-B", self.branch, f"{self.remote}/{self.branch}", target=target
        )
        good = await self._commit(self._ref(target.to_version, target), target)
        if await self._tree("HEAD", target) != await self._tree(good, target):
            bad = await self._bad_commit(target)
            # NOTE: a merge commit in the range makes git revert fail (it needs -m); the step
            # then fails with git's message and traffic is resumed.
            await self._git("revert", "--no-edit", "--no-commit", f"{good}..{bad}", target=target)
            message = (
                f"Roll back {target.service} in {target.environment} to {target.to_version}\n\n"
                f"Reverts {good[:12]}..{bad[:12]} ({target.from_version or 'branch head'})."
            )
            await self._git("commit", "--allow-empty", "-m", message, target=target)
        await self._git("push", self.remote, f"HEAD:refs/heads/{self.branch}", target=target)

    async def is_switched(self, target: Target) -> bool | None:
        """Return whether the remote branch's tree is the target's tree."""
        good = await self._commit(self._ref(target.to_version, target), target)
        return await self._tree(f"{self.remote}/{self.branch}", target) == await self._tree(
            good, target
        )

    async def check_health(self, target: Target) -> None:
        """Probe ``health_url`` if set."""
        await self.health.check(target)
