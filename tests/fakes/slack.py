"""The fake Slack incoming webhook, re-exported from :mod:`shared.fake_slack`.

The server lives in ``shared`` so that the installed package (``travi demo``) can use it too.
Run it with ``python -m tests.fakes.slack --port N``; it prints every message it receives.
"""

from shared.fake_slack import FakeSlack, Received, RecordingServer, Reply, main, slack_error

__all__ = ["FakeSlack", "Received", "RecordingServer", "Reply", "main", "slack_error"]

if __name__ == "__main__":
    main()
