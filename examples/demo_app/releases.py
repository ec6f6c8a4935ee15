"""Create the demo's releases folder: ``releases/<version>/release.json`` and ``current``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.names import validate_version

RELEASES = {"v1.1.0": 0.0, "v1.2.0": 0.25}


def create_releases(root: Path) -> None:
    """Write every demo release under ``root/releases``."""
    for version, error_share in RELEASES.items():
        folder = root / "releases" / version
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "release.json").write_text(
            json.dumps({"version": version, "error_share": error_share})
        )


def point_current(root: Path, version: str) -> None:
    """Switch ``root/current`` to ``releases/<version>`` atomically (new link, then rename)."""
    validate_version(version)
    staging = root / f".current-{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(Path("releases") / version)
    os.replace(staging, root / "current")


def read_release(release_dir: Path) -> dict[str, object]:
    """Return the release description in ``release_dir``."""
    return json.loads((release_dir / "release.json").read_text())
