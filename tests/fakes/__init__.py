"""Local HTTP servers that respond like Slack, Atlassian Statuspage and a generic webhook."""
