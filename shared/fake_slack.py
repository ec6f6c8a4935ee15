"""A local HTTP server that responds like a Slack incoming webhook, for tests and demos.

It records every request with its receive time and returns ``200 ok`` unless responses were
scripted with :meth:`RecordingServer.script`. It rejects a body Slack would reject (no text
and no blocks, a header over 150 characters, a section over 3000) with ``400
invalid_blocks``. It runs in a thread, so async code in the same process can call it.

Run it on its own and it prints each message it receives::

    python -m shared.fake_slack --port 9123
    TRAVI_NOTIFIER__SLACK_WEBHOOK_URL=http://127.0.0.1:9123/services/T0/B0/XYZ travi up

:class:`RecordingServer` is the base that the Statuspage and webhook fakes in the tests
build on.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEADER_LIMIT = 150
SECTION_LIMIT = 3000


@dataclass(frozen=True)
class Reply:
    """A scripted response."""

    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Received:
    """One request as the server received it, with the reply it got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic() of this process
    status: int

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body.decode("utf-8"))


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1 that records requests and replays scripted replies."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.requests: list[Received] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Received], None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                received_at = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = server.reply_for(self.command, self.path, dict(self.headers.items()), body)
                payload = reply.body.encode("utf-8")
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                received = Received(
                    self.command, self.path, dict(self.headers.items()), body, received_at,
                    reply.status,
                )
                server.record(received)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, *_args: object) -> None:
                return  # requests are recorded, not printed

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._http.server_address[1]

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Respond to the next requests with ``replies``, in order, then with the default."""
        with self._lock:
            self._script.extend(replies)

    def on_request(self, listener: Callable[[Received], None]) -> None:
        """Call ``listener`` with every request received."""
        self._listeners.append(listener)

    def next_scripted(self) -> Reply | None:
        """Take the next scripted reply, if any."""
        with self._lock:
            return self._script.popleft() if self._script else None

    def reply_for(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Return the reply to a request; subclasses respond like the service they imitate."""
        return self.next_scripted() or Reply()

    def record(self, received: Received) -> None:
        """Keep a received request and tell the listeners."""
        with self._lock:
            self.requests.append(received)
        for listener in self._listeners:
            listener(received)

    def received(self, status: int | None = None) -> list[Received]:
        """Return the requests received so far, optionally only those that got ``status``."""
        with self._lock:
            items = list(self.requests)
        return [item for item in items if status is None or item.status == status]

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted, then close the socket."""
        try:
            self._http.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._http.server_close()

    def start(self) -> RecordingServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _texts(blocks: Iterable[dict[str, Any]]) -> Iterable[tuple[str, str]]:
    for block in blocks:
        kind = block.get("type", "")
        text = block.get("text")
        if isinstance(text, dict):
            yield kind, str(text.get("text", ""))
        for item in block.get("fields") or []:
            yield "field", str(item.get("text", ""))


def slack_error(body: bytes) -> str | None:
    """Return the error Slack would return for ``body``, or None for a valid message."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "invalid_payload"
    if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
        return "no_text"
    for kind, text in _texts(message.get("blocks") or []):
        if kind == "header" and len(text) > HEADER_LIMIT:
            return "invalid_blocks"
        if kind == "section" and len(text) > SECTION_LIMIT:
            return "invalid_blocks"
    return None


class FakeSlack(RecordingServer):
    """Answers like a Slack incoming webhook: ``200 ok``, or a scripted reply."""

    def reply_for(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Check the body like Slack, then answer with the next scripted reply or ``ok``."""
        if method != "POST":
            return Reply(405, "invalid_method")
        error = slack_error(body)
        if error is not None:
            return Reply(400, error)
        return self.next_scripted() or Reply()

    @property
    def webhook_url(self) -> str:
        """A webhook URL on this server, shaped like Slack's."""
        return f"{self.url}/services/T000/B000/fake"

    def messages(self) -> list[dict[str, Any]]:
        """Return the accepted messages (answered 200), oldest first."""
        return [item.json() for item in self.received(status=200)]


def _print_message(received: Received) -> None:
    stamp = time.strftime("%H:%M:%S")
    try:
        text = received.json().get("text", "")
    except ValueError:
        text = received.body[:200].decode("utf-8", "replace")
    print(f"{stamp} {received.method} {received.path} -> {received.status}: {text}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run a fake Slack webhook in the foreground and print what it receives."""
    parser = argparse.ArgumentParser(description="A fake Slack incoming webhook on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (0: a free one).")
    args = parser.parse_args(argv)
    server = FakeSlack(args.port)
    server.on_request(_print_message)
    print(f"Fake Slack webhook listening: {server.webhook_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
