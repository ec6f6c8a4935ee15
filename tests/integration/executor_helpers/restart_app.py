"""Restart the tiny app from the release that ``current`` points at.

Usage: restart_app.py ROOT PORT. The pid of the running app is kept in ROOT/app.pid.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

root, port = Path(sys.argv[1]), sys.argv[2]
pid_file = root / "app.pid"
if pid_file.exists():
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    time.sleep(0.2)
release = (root / "current").resolve()
app = subprocess.Popen(
    [sys.executable, str(release / "tiny_app.py"), port, release.name],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    start_new_session=True,
)
pid_file.write_text(str(app.pid))
