"""Target selection of rollbacks, and the checks of an operator's chosen target.

Versions are ordered by their first appearance in the deployment history (the earliest
``deployed_at`` of any record of that version, ties broken by the order of storage). A later
redeployment of an old version, or a rollback to it, does not move it forward, so a rollback
always goes back in that order and never forward to a version introduced after the current one.

The target of an automatic rollback is the newest version before the current one that has at
least one successful deployment and is not marked bad. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.planner.errors import RollbackRejected


@dataclass(frozen=True)
class DeploymentRecord:
    """One row of the deployment history; ``sequence`` is the order of storage."""

    version: str
    status: str
    deployed_at: datetime
    sequence: int


def version_order(history: Iterable[DeploymentRecord]) -> list[str]:
    """Return every version in the history, oldest first, by first appearance."""
    first_seen: dict[str, tuple[datetime, int]] = {}
    for record in history:
        key = (record.deployed_at, record.sequence)
        if record.version not in first_seen or key < first_seen[record.version]:
            first_seen[record.version] = key
    return sorted(first_seen, key=first_seen.__getitem__)


def succeeded_versions(history: Iterable[DeploymentRecord]) -> set[str]:
    """Return the versions with at least one successful deployment."""
    return {record.version for record in history if record.status == "succeeded"}


def select_target(
    history: Sequence[DeploymentRecord], current: str | None, bad: Collection[str]
) -> str | None:
    """Return the newest good version before ``current``, or None when there is none."""
    if current is None:
        return None
    order = version_order(history)
    if current not in order:
        # A version the history has never seen is the newest one: every known version is older.
        earlier = order
    else:
        earlier = order[: order.index(current)]
    succeeded = succeeded_versions(history)
    for version in reversed(earlier):
        if version in succeeded and version not in bad and version != current:
            return version
    return None


def breaching_version(
    history: Sequence[DeploymentRecord], recorded_current: str | None, breach_version: str | None
) -> tuple[str | None, bool]:
    """Return the version a breach is about and whether the breach is stale.

    A breach that names no version is about the recorded current version. A breach that names
    a version the history has never seen, or one that first appeared after the recorded current
    version, is about a deployment the planner has not heard of yet, so that version counts as
    current. A breach about a version older than the current one is stale: it comes from
    traffic served before a deployment or a rollback replaced that version.
    """
    if breach_version is None or breach_version == recorded_current:
        return recorded_current, False
    if recorded_current is None:
        return breach_version, False
    order = version_order(history)
    if breach_version not in order or recorded_current not in order:
        return breach_version, False
    if order.index(breach_version) > order.index(recorded_current):
        return breach_version, False
    return recorded_current, True


def check_manual_target(
    history: Sequence[DeploymentRecord],
    current: str | None,
    target: str,
    bad: Collection[str],
    *,
    force: bool,
    reason: str,
) -> None:
    """Raise RollbackRejected unless an operator may roll back from ``current`` to ``target``."""
    if current is None:
        raise RollbackRejected(
            "fromVersion",
            None,
            "no current version is recorded for this service: record a deployment with "
            "'travi deploy record' or pass fromVersion",
        )
    if target == current:
        raise RollbackRejected(
            "targetVersion",
            target,
            f"the target is the current version {current}: choose an earlier version",
            status_code=409,
        )
    if target not in succeeded_versions(history):
        raise RollbackRejected(
            "targetVersion",
            target,
            "the target never deployed successfully in this environment: "
            "choose a version with a succeeded deployment",
            status_code=422,
        )
    if target in bad and not force:
        raise RollbackRejected(
            "targetVersion",
            target,
            "the target is marked bad because it triggered a rollback: choose another version, "
            "or pass force=true with a reason",
            status_code=409,
        )
    if target in bad and not reason.strip():
        raise RollbackRejected(
            "reason",
            reason,
            "forcing a bad-marked target needs a reason: say why it is safe now",
            status_code=422,
        )
