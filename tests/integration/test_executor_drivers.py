"""Deployment drivers and traffic controls against real files, processes, git and HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.executor.drivers.base import Target
from services.executor.drivers.command import CommandDriver
from services.executor.drivers.git import GitDriver
from services.executor.drivers.http import HttpDriver
from services.executor.drivers.releases import ReleasesDriver
from services.executor.drivers.traffic import CommandTraffic, HttpTraffic, NoTraffic
from services.executor.errors import StepFailed
from shared.embedded import free_port
from tests.integration.executor_helpers.deployer import FakeDeployer
from tests.integration.executor_helpers.harness import HELPERS, record

TARGET_ARGS = ("production", "checkout", "v1.2.0", "v1.1.0")


def target() -> Target:
    return Target(*TARGET_ARGS)


@pytest.fixture
def release_root(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    for version in ("v1.1.0", "v1.2.0"):
        (root / "releases" / version).mkdir(parents=True)
    (root / "current").symlink_to(Path("releases") / "v1.2.0")
    return root


async def test_releases_switch_is_atomic_and_idempotent(release_root, tmp_path):
    restarts = tmp_path / "restarts"
    driver = ReleasesDriver(
        {"root": str(release_root), "restart": record(restarts, "{version}")}, "options"
    )

    await driver.validate_target(target())
    assert await driver.is_switched(target()) is False
    await driver.switch(target())
    await driver.switch(target())

    assert os.readlink(release_root / "current") == "releases/v1.1.0"
    assert await driver.is_switched(target()) is True
    assert restarts.read_text().splitlines() == ["v1.1.0", "v1.1.0"]
    assert sorted(p.name for p in release_root.iterdir()) == ["current", "releases"]
    with pytest.raises(StepFailed, match="already points at v1.1.0"):
        await driver.validate_target(target())


async def test_releases_validate_missing_version(release_root):
    driver = ReleasesDriver({"root": str(release_root)}, "options")
    with pytest.raises(StepFailed, match="not found"):
        await driver.validate_target(Target("production", "checkout", "v1.2.0", "v0.9.0"))


async def test_releases_cleanup_removes_bad_release(release_root):
    driver = ReleasesDriver({"root": str(release_root), "remove_failed_release": True}, "options")
    with pytest.raises(StepFailed, match="points at it"):
        await driver.cleanup(target())
    await driver.switch(target())
    await driver.cleanup(target())
    assert not (release_root / "releases" / "v1.2.0").exists()
    assert (release_root / "releases" / "v1.1.0").is_dir()


async def test_command_runs_without_shell(tmp_path):
    out = tmp_path / "out"
    script = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    driver = CommandDriver(
        {"switch": [sys.executable, "-c", script, str(out), "$(id) {service} {version}"]}, "options"
    )
    await driver.switch(target())
    assert out.read_text() == "$(id) checkout v1.1.0"


async def test_command_failure_and_timeout(tmp_path):
    failing = CommandDriver(
        {"switch": [sys.executable, "-c", "import sys; sys.exit('no disk')"]}, "options"
    )
    with pytest.raises(StepFailed, match="exited with code 1: no disk"):
        await failing.switch(target())

    slow = CommandDriver(
        {
            "switch": [sys.executable, "-c", "import time; time.sleep(30)"],
            "command_timeout_seconds": 0.3,
        },
        "options",
    )
    with pytest.raises(TimeoutError):
        await slow.switch(target())


async def test_command_current_confirms_switch():
    driver = CommandDriver({"switch": ["true"], "current": ["echo", "v1.1.0"]}, "options")
    assert await driver.is_switched(target()) is True
    assert CommandDriver({"switch": ["true"]}, "options").switch_is_idempotent is False


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def git_remote(tmp_path: Path) -> tuple[Path, Path]:
    """A bare remote with tags v1.0.0, v1.1.0 and v1.2.0 on main, and a clone for the driver."""
    remote = tmp_path / "remote.git"
    git("init", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    author = tmp_path / "author"
    git("clone", str(remote), str(author), cwd=tmp_path)
    git("checkout", "-b", "main", cwd=author)
    for version, content in (("v1.0.0", "one"), ("v1.1.0", "good"), ("v1.2.0", "bad")):
        (author / "app.txt").write_text(content)
        (author / version).write_text(version)
        git("add", ".", cwd=author)
        git("commit", "-m", f"Release {version}", cwd=author)
        git("tag", version, cwd=author)
    git("push", "origin", "main", "--tags", cwd=author)
    clone = tmp_path / "clone"
    git("clone", str(remote), str(clone), cwd=tmp_path)
    return remote, clone


async def test_git_reverts_to_target_and_pushes(git_remote):
    remote, clone = git_remote
    driver = GitDriver({"repository": str(clone)}, "options")

    await driver.validate_target(target())
    await driver.switch(target())
    head = git("rev-parse", "main", cwd=remote)
    await driver.switch(target())

    assert git("rev-parse", "main^{tree}", cwd=remote) == git(
        "rev-parse", "v1.1.0^{tree}", cwd=remote
    )
    assert git("rev-parse", "main", cwd=remote) == head
    assert "Roll back checkout" in git("log", "-1", "--format=%s", "main", cwd=remote)
    assert await driver.is_switched(target()) is True
    with pytest.raises(StepFailed, match="already has the tree"):
        await driver.validate_target(target())


async def test_git_rejects_unknown_target(git_remote):
    _remote, clone = git_remote
    driver = GitDriver({"repository": str(clone)}, "options")
    with pytest.raises(StepFailed, match="not found"):
        await driver.validate_target(Target("production", "checkout", "v1.2.0", "v0.5.0"))


async def test_http_driver_and_traffic():
    with FakeDeployer() as deployer:
        driver = HttpDriver({"base_url": deployer.url}, "options")
        traffic = HttpTraffic({"base_url": deployer.url}, "traffic_options")
        await traffic.pause(target())
        assert deployer.traffic == {"checkout": "paused"}
        assert await traffic.in_flight(target()) == 0
        await driver.validate_target(target())
        await driver.switch(target())
        await driver.check_health(target())
        await traffic.resume(target())
    assert deployer.switches == {"checkout": 1}
    assert deployer.traffic == {"checkout": "resumed"}


async def test_http_driver_unreachable_fails_step():
    driver = HttpDriver(
        {"base_url": f"http://127.0.0.1:{free_port()}", "timeout_seconds": 2}, "options"
    )
    with pytest.raises(StepFailed, match="ConnectError"):
        await driver.switch(target())


async def test_command_traffic_counts_in_flight(tmp_path):
    count = tmp_path / "count"
    count.write_text("4\n")
    traffic = CommandTraffic(
        {
            "pause": record(tmp_path / "traffic", "paused"),
            "resume": record(tmp_path / "traffic", "resumed"),
            "in_flight": [sys.executable, str(HELPERS / "in_flight.py"), str(count)],
        },
        "traffic_options",
    )
    await traffic.pause(target())
    assert await traffic.in_flight(target()) == 4
    count.write_text("nope")
    with pytest.raises(StepFailed, match="not a number"):
        await traffic.in_flight(target())
    await traffic.resume(target())
    assert (tmp_path / "traffic").read_text().splitlines() == ["paused", "resumed"]


async def test_no_traffic_drain():
    assert await NoTraffic({}, "t").in_flight(target()) == 0
    fixed = NoTraffic({"drain_seconds": 2}, "t")
    assert await fixed.in_flight(target()) is None
    assert fixed.drain_seconds == 2.0
