"""A fake Atlassian Statuspage API v1: incidents on one page, kept in memory.

It implements what the notifier calls: ``POST /v1/pages/{page}/incidents`` (201 with the new
incident) and ``PATCH /v1/pages/{page}/incidents/{id}`` (200), checks the
``Authorization: OAuth <key>`` header (401 otherwise), and keeps each component's status.
Scripted replies (for example 420 with ``Retry-After``, or 503 while "down") are answered
before the real handling. Run it with ``python -m tests.fakes.statuspage --port N``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
from typing import Any

from shared.fake_slack import Received, RecordingServer, Reply

INCIDENTS = re.compile(r"^/v1/pages/(?P<page>[^/]+)/incidents(?:/(?P<incident>[^/]+))?/?$")


class FakeStatuspage(RecordingServer):
    """Imitates the Statuspage REST API for one page."""

    def __init__(
        self, page_id: str = "page1", api_key: str = "statuspage-key", port: int = 0
    ) -> None:
        super().__init__(port)
        self.page_id = page_id
        self.api_key = api_key
        self.incidents: dict[str, dict[str, Any]] = {}
        self.components: dict[str, str] = {}
        self.down = False
        self._ids = itertools.count(1)
        self._state_lock = threading.Lock()

    @property
    def api_url(self) -> str:
        """The API base URL, as the notifier's ``statuspage_api_url`` setting takes it."""
        return f"{self.url}/v1"

    def reply_for(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Return a scripted reply, 503 while down, or the result of the incident request."""
        scripted = self.next_scripted()
        if scripted is not None:
            return scripted
        if self.down:
            return _json_reply(503, {"error": "Service Unavailable"})
        if headers.get("Authorization") != f"OAuth {self.api_key}":
            return _json_reply(401, {"error": "Could not authenticate"})
        match = INCIDENTS.match(path)
        if match is None or match["page"] != self.page_id:
            return _json_reply(404, {"error": "Not found"})
        try:
            document = json.loads(body.decode("utf-8"))["incident"]
        except (ValueError, KeyError, TypeError):
            return _json_reply(400, {"error": "incident is missing"})
        with self._state_lock:
            if method == "POST" and match["incident"] is None:
                return self._create(document)
            if method == "PATCH" and match["incident"] is not None:
                return self._update(match["incident"], document)
        return _json_reply(405, {"error": "Method not allowed"})

    def _create(self, document: dict[str, Any]) -> Reply:
        if not document.get("name"):
            return _json_reply(422, {"error": ["name can't be blank"]})
        incident_id = f"inc{next(self._ids):04d}"
        incident = {
            "id": incident_id,
            "name": document["name"],
            "status": document.get("status", "investigating"),
            "updates": [document.get("body", "")],
            "created_at": time.time(),
        }
        self.incidents[incident_id] = incident
        self.components.update(document.get("components") or {})
        return _json_reply(201, incident)

    def _update(self, incident_id: str, document: dict[str, Any]) -> Reply:
        incident = self.incidents.get(incident_id)
        if incident is None:
            return _json_reply(404, {"error": "Not found"})
        incident["status"] = document.get("status", incident["status"])
        if document.get("body"):
            incident["updates"].append(document["body"])
        self.components.update(document.get("components") or {})
        return _json_reply(200, incident)

    def changes(self) -> list[Received]:
        """Return the requests that created or changed an incident."""
        return [item for item in self.received() if item.status in {200, 201}]


def _json_reply(status: int, document: Any) -> Reply:
    return Reply(status, json.dumps(document), content_type="application/json")


def main(argv: list[str] | None = None) -> None:
    """Run the fake Statuspage API in the foreground and print what it receives."""
    parser = argparse.ArgumentParser(description="A fake Statuspage API v1 on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (0: a free one).")
    parser.add_argument("--page-id", default="page1", help="The page id it serves.")
    parser.add_argument("--api-key", default="statuspage-key", help="The API key it accepts.")
    args = parser.parse_args(argv)
    server = FakeStatuspage(args.page_id, args.api_key, args.port)
    server.on_request(
        lambda item: print(
            f"{item.method} {item.path} -> {item.status}: {item.body[:300]!r}", flush=True
        )
    )
    print(f"Fake Statuspage API listening: {server.api_url} (page {args.page_id})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
