"""Local HTTP servers that answer like Slack, Atlassian Statuspage and a generic webhook."""
