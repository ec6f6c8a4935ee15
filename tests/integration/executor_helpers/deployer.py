"""A fake deployer and load balancer over HTTP, run in a thread of the test process.

It counts switches per service and keeps each service's traffic state, for the ``http``
driver and the ``http`` traffic control.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeDeployer:
    """Serves the default paths of the http driver and http traffic control."""

    def __init__(self) -> None:
        self.switches: Counter[str] = Counter()
        self.traffic: dict[str, str] = {}
        self.lock = threading.Lock()
        deployer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: bytes = b"{}") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls.
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                parts = self.path.strip("/").split("/")
                with deployer.lock:
                    if parts[0] == "services" and parts[-1] == "switch":
                        deployer.switches[parts[2]] += 1
                    elif parts[0] in {"pause", "resume"}:
                        deployer.traffic[parts[2]] = "paused" if parts[0] == "pause" else "resumed"
                self._reply(200)

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls.
                if self.path.startswith("/in-flight/"):
                    self._reply(200, b'{"in_flight": 0}')
                else:
                    self._reply(200, b'{"status": "ok"}')

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeDeployer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
