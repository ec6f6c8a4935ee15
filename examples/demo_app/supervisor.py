"""Run the demo app from ``<root>/current`` and restart it on SIGHUP.

This plays the part of a process manager (systemd, supervisord): the releases driver's restart
command is ``kill -HUP <pid>``, and the supervisor starts a new app process from whatever
release ``current`` points at. SIGTERM stops the app and the supervisor.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path


def _start_app(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    release = (Path(args.root) / "current").resolve()
    argv = [sys.executable, "-m", "examples.demo_app.app", "--release", str(release),
            "--port", str(args.port), "--service", args.service, "--environment", args.environment]
    if args.nats_url:
        argv += ["--nats-url", args.nats_url]
    return subprocess.Popen(argv)


def _stop_app(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, start the app and supervise it until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, help="Folder holding releases/ and current.")
    parser.add_argument("--port", type=int, required=True, help="Port the app listens on.")
    parser.add_argument("--service", default="checkout")
    parser.add_argument("--environment", default="production")
    parser.add_argument("--nats-url", default=None, help="Where the app reports its requests.")
    parser.add_argument("--pid-file", default=None, help="Write the supervisor's pid here.")
    args = parser.parse_args(argv)

    if args.pid_file:
        Path(args.pid_file).write_text(str(os.getpid()))
    restart = threading.Event()
    stop = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: restart.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    process = _start_app(args)
    while not stop.is_set():
        if restart.wait(0.1):
            restart.clear()
            _stop_app(process)
            process = _start_app(args)
        elif process.poll() is not None and not stop.is_set():
            process = _start_app(args)
    _stop_app(process)


if __name__ == "__main__":
    main()
