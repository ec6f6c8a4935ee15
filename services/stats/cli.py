"""Stats commands of the ``travi`` CLI: statistics, the plan list, one plan and its report.

``travi stats`` prints the statistics, ``travi stats signals`` lists breaches, suppressions,
escalations and failed notifications, and ``travi stats rebuild`` replays the view from the
stream; ``travi rollback list``, ``show`` and ``report`` read plans. Every command calls the
HTTP API of a running TRAVI through :class:`shared.client.ApiClient`. An API error ends the
command with a one-line message and exit code 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import typer

from shared.client import ApiClient
from shared.settings import Settings

STATS_FIELDS = (
    "total",
    "pending",
    "inProgress",
    "completed",
    "failed",
    "cancelled",
    "automaticCount",
    "manualCount",
    "avgDurationMs",
    "successRate",
)
LIST_COLUMNS = ("id", "environment", "service", "status", "trigger", "triggerType", "createdAt", "durationMs")
SIGNAL_COLUMNS = ("occurredAt", "kind", "environment", "service", "label", "planId", "detail")
DETAIL_FIELDS = (
    "id",
    "environment",
    "service",
    "fromVersion",
    "toVersion",
    "status",
    "trigger",
    "triggerType",
    "actor",
    "reason",
    "createdAt",
    "startedAt",
    "finishedAt",
    "durationMs",
    "failedStep",
    "error",
    "reportAvailable",
)
# A rebuild replays the whole stream, which takes far longer than an ordinary request.
REBUILD_TIMEOUT_SECONDS = 900.0


def _client(timeout: float = 30.0) -> ApiClient:
    try:
        settings = Settings()
    except ValueError as exc:
        typer.echo(f"Invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    return ApiClient(settings, timeout=timeout)


# C0 controls, DEL and C1 controls. A signal's detail comes from producers and alert webhooks,
# and printed raw it could move the cursor, retitle the terminal or break a table row.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escape_control(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def _text(value: object) -> str:
    """Return ``value`` as one line of text, with control characters shown as escapes."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if value < 10 else f"{value:.0f}"
    return CONTROL_CHARACTERS.sub(_escape_control, str(value))


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """Return ``rows`` as aligned text lines under a header of ``columns``."""
    cells = [[_text(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))]
    for line in cells:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return [line.rstrip() for line in lines]


def format_fields(record: dict[str, Any], fields: Sequence[str]) -> list[str]:
    """Return ``record`` as aligned ``name  value`` lines."""
    width = max(len(name) for name in fields)
    return [f"{name.ljust(width)}  {_text(record.get(name))}" for name in fields]


def _plan_path(plan_id: str, suffix: str = "") -> str:
    try:
        UUID(plan_id)
    except ValueError:
        typer.echo(f"Invalid plan id {plan_id!r}: give the UUID that 'travi rollback list' shows.", err=True)
        raise typer.Exit(2) from None
    return f"/api/admin/rollbacks/{plan_id}{suffix}"


def _echo(lines: Sequence[str]) -> None:
    for line in lines:
        typer.echo(line)


def _print_page(
    path: str,
    filters: dict[str, str | None],
    limit: int,
    offset: int,
    columns: Sequence[str],
    items_name: str,
) -> None:
    """Fetch one page of a list route and print it as a table, with a hint when more match."""
    params = {key: value for key, value in filters.items() if value is not None}
    body = _client().get(path, params={**params, "limit": limit, "offset": offset})
    if not body["items"]:
        typer.echo(f"No {items_name} match.")
        return
    _echo(format_table(body["items"], columns))
    last_shown = offset + len(body["items"])
    if last_shown < body["total"]:
        typer.echo(f"{last_shown} of {body['total']} shown; use --offset {last_shown} for more.")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``travi stats`` (and ``stats rebuild``) and the read commands of ``travi rollback``."""
    stats_app = typer.Typer(
        help="Print rollback statistics; 'travi stats rebuild' replays them from the stream.",
        invoke_without_command=True,
    )

    @stats_app.callback()
    def stats(
        context: typer.Context,
        environment: str | None = typer.Option(None, "--env", help="Only this environment."),
        service: str | None = typer.Option(None, "--service", help="Only this service."),
        since: str | None = typer.Option(None, help="Plans created at or after, ISO 8601 with zone."),
        until: str | None = typer.Option(None, help="Plans created before, ISO 8601 with zone."),
    ) -> None:
        """Print the rollback statistics."""
        if context.invoked_subcommand is not None:
            return
        params = {"environment": environment, "service": service, "since": since, "until": until}
        body = _client().get(
            "/api/admin/rollback/stats", params={k: v for k, v in params.items() if v is not None}
        )
        _echo(format_fields(body, STATS_FIELDS))
        breakdown = body.get("triggerBreakdown") or {}
        if breakdown:
            typer.echo("")
            rows = [{"trigger": name, "plans": count} for name, count in breakdown.items()]
            _echo(format_table(rows, ("trigger", "plans")))

    @stats_app.command("rebuild")
    def rebuild() -> None:
        """Wipe the statistics view and replay it from the rollback stream (operator role)."""
        body = _client(REBUILD_TIMEOUT_SECONDS).post("/api/admin/rollback/stats/rebuild")
        typer.echo(
            f"Replayed {body['messages']} messages up to sequence {body['lastSequence']}: "
            f"{body['applied']} applied, {body['skipped']} skipped, in {body['seconds']} s."
        )

    @stats_app.command("signals")
    def signals(
        kind: str | None = typer.Option(
            None, help="Only this kind: breach, suppressed, escalation or notification_failed."
        ),
        environment: str | None = typer.Option(None, "--env", help="Only this environment."),
        service: str | None = typer.Option(None, "--service", help="Only this service."),
        since: str | None = typer.Option(None, help="Signals at or after, ISO 8601 with zone."),
        until: str | None = typer.Option(None, help="Signals before, ISO 8601 with zone."),
        limit: int = typer.Option(20, min=1, max=500, help="Signals to show, newest first."),
        offset: int = typer.Option(0, min=0, help="Signals to skip."),
    ) -> None:
        """List breaches, suppressions (why no rollback ran), escalations and failed notifications."""
        filters = {
            "kind": kind,
            "environment": environment,
            "service": service,
            "since": since,
            "until": until,
        }
        _print_page("/api/admin/signals", filters, limit, offset, SIGNAL_COLUMNS, "signals")

    app.add_typer(stats_app, name="stats")
    rollback = groups["rollback"]

    @rollback.command("list")
    def list_rollbacks(
        environment: str | None = typer.Option(None, "--env", help="Only this environment."),
        service: str | None = typer.Option(None, "--service", help="Only this service."),
        status: str | None = typer.Option(
            None, help="Only this status: pending, in_progress, completed, failed or cancelled."
        ),
        limit: int = typer.Option(20, min=1, max=500, help="Plans to show, newest first."),
        offset: int = typer.Option(0, min=0, help="Plans to skip."),
    ) -> None:
        """List rollback plans, newest first."""
        filters = {"environment": environment, "service": service, "status": status}
        _print_page("/api/admin/rollbacks", filters, limit, offset, LIST_COLUMNS, "rollback plans")

    @rollback.command("show")
    def show(plan_id: str = typer.Argument(..., help="The plan's id.")) -> None:
        """Print one plan with its steps and the breach that caused it."""
        plan = _client().get(_plan_path(plan_id))
        _echo(format_fields(plan, DETAIL_FIELDS))
        breach = plan.get("breach")
        if breach:
            typer.echo(
                f"breach           {breach.get('trigger')}: measured {breach.get('measured')} "
                f"over threshold {breach.get('threshold')} at {breach.get('detectedAt')}"
            )
        if plan.get("steps"):
            typer.echo("")
            columns = ("name", "status", "attempt", "durationMs", "error")
            _echo(format_table(plan["steps"], columns))

    @rollback.command("report")
    def report(plan_id: str = typer.Argument(..., help="The plan's id.")) -> None:
        """Print a plan's incident report (markdown)."""
        typer.echo(_client().get(_plan_path(plan_id, "/incident-report")))
