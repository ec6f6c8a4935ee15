"""Target selection: the newest good version before the current one, and manual checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.planner.errors import RollbackRejected
from services.planner.targets import (
    DeploymentRecord,
    breaching_version,
    check_manual_target,
    select_target,
    version_order,
)

START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def history(*entries: tuple[str, str]) -> list[DeploymentRecord]:
    """Build a history with one record a minute, in the order given."""
    return [
        DeploymentRecord(version, status, START + timedelta(minutes=i), i)
        for i, (version, status) in enumerate(entries)
    ]


FOUR_VERSIONS = history(
    ("v1", "succeeded"), ("v2", "succeeded"), ("v3", "failed"), ("v4", "succeeded")
)


def test_target_skips_failed_version():
    assert select_target(FOUR_VERSIONS, "v4", bad=set()) == "v2"


def test_target_skips_bad_version():
    assert select_target(FOUR_VERSIONS, "v4", bad={"v2"}) == "v1"


def test_target_none_for_first_version():
    assert select_target(history(("v1", "succeeded")), "v1", bad=set()) is None


def test_target_none_without_current():
    assert select_target(FOUR_VERSIONS, None, bad=set()) is None


def test_target_never_moves_forward():
    # v3 was rolled back to v2 (a second v2 record) and redeployed; v2 breaching goes to v1.
    records = history(
        ("v1", "succeeded"),
        ("v2", "succeeded"),
        ("v3", "succeeded"),
        ("v2", "succeeded"),
        ("v3", "succeeded"),
    )
    assert version_order(records) == ["v1", "v2", "v3"]
    assert select_target(records, "v2", bad=set()) == "v1"


def test_target_for_redeployed_bad_version():
    records = history(
        ("v1", "succeeded"),
        ("v2", "succeeded"),
        ("v3", "succeeded"),
        ("v2", "succeeded"),
        ("v3", "succeeded"),
    )
    assert select_target(records, "v3", bad={"v3"}) == "v2"


def test_target_for_unknown_current_is_newest_known():
    assert select_target(FOUR_VERSIONS, "v9", bad=set()) == "v4"


def test_order_uses_earliest_deployed_at():
    # Records stored out of order: v2's record arrived first but was deployed later.
    records = [
        DeploymentRecord("v2", "succeeded", START + timedelta(minutes=5), 0),
        DeploymentRecord("v1", "succeeded", START, 1),
    ]
    assert version_order(records) == ["v1", "v2"]


def test_breaching_version_without_version():
    assert breaching_version(FOUR_VERSIONS, "v4", None) == ("v4", False)


def test_breaching_version_unknown_is_current():
    assert breaching_version(FOUR_VERSIONS, "v4", "v5") == ("v5", False)


def test_breaching_version_without_history():
    assert breaching_version([], None, "v1") == ("v1", False)


def test_breaching_version_older_is_stale():
    assert breaching_version(FOUR_VERSIONS, "v4", "v2") == ("v4", True)


def test_breaching_version_newer_than_recorded():
    # v4 started but its success was not recorded yet; a v4 breach is about v4.
    assert breaching_version(FOUR_VERSIONS, "v2", "v4") == ("v4", False)


@pytest.mark.parametrize(
    ("target", "bad", "force", "reason", "field", "status"),
    [
        ("v4", set(), False, "", "targetVersion", 409),
        ("v3", set(), False, "", "targetVersion", 422),
        ("v7", set(), False, "", "targetVersion", 422),
        ("v2", {"v2"}, False, "", "targetVersion", 409),
        ("v2", {"v2"}, True, "  ", "reason", 422),
    ],
    ids=["equal-to-current", "never-succeeded", "unknown", "bad", "forced-without-reason"],
)
def test_manual_target_rejected(target, bad, force, reason, field, status):
    with pytest.raises(RollbackRejected) as caught:
        check_manual_target(FOUR_VERSIONS, "v4", target, bad, force=force, reason=reason)
    assert caught.value.field == field
    assert caught.value.status_code == status
    assert caught.value.hint in str(caught.value)


def test_manual_target_without_current_rejected():
    with pytest.raises(RollbackRejected) as caught:
        check_manual_target(FOUR_VERSIONS, None, "v2", set(), force=False, reason="")
    assert caught.value.field == "fromVersion"


def test_manual_target_accepted():
    check_manual_target(FOUR_VERSIONS, "v4", "v2", set(), force=False, reason="")
    check_manual_target(FOUR_VERSIONS, "v4", "v1", set(), force=False, reason="")


def test_manual_target_forced_with_reason():
    check_manual_target(FOUR_VERSIONS, "v4", "v2", {"v2"}, force=True, reason="hotfix in config")
