"""A fake receiver of the notifier's generic webhook that checks each request's signature.

Run it with ``python -m tests.fakes.webhook --port N --secret S``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac

from shared.fake_slack import Received, RecordingServer, Reply

SIGNATURE_HEADER = "X-Travi-Signature"
TIMESTAMP_HEADER = "X-Travi-Timestamp"


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Compute the signature independently of the notifier's code."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class FakeWebhook(RecordingServer):
    """Accepts a POST with a valid signature (204) and rejects others (401)."""

    def __init__(self, secret: str, port: int = 0) -> None:
        super().__init__(port)
        self.secret = secret

    def reply_for(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Check the signature, then return a scripted reply or 204."""
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(signature, expected_signature(self.secret, timestamp, body)):
            return Reply(401, "bad signature")
        return self.next_scripted() or Reply(204, "")

    def accepted(self) -> list[Received]:
        """Return the requests with a valid signature that were accepted."""
        return self.received(status=204)


def main(argv: list[str] | None = None) -> None:
    """Run the fake webhook receiver in the foreground and print what it receives."""
    parser = argparse.ArgumentParser(description="A fake signed-webhook receiver on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="Port to listen on (0: a free one).")
    parser.add_argument("--secret", required=True, help="The shared HMAC secret.")
    args = parser.parse_args(argv)
    server = FakeWebhook(args.secret, args.port)
    server.on_request(lambda item: print(f"{item.method} {item.path} -> {item.status}", flush=True))
    print(f"Fake webhook listening: {server.url}/hook", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
