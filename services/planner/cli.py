"""Planner commands of the ``travi`` CLI: record deployments, create, run and cancel rollbacks.

Every command calls the HTTP API of a running TRAVI through :class:`shared.client.ApiClient`.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from shared.client import ApiClient, ApiError
from shared.settings import Settings

FINAL_STATUSES = ("completed", "failed", "cancelled")
PLAN_FIELDS = (
    "id",
    "environment",
    "service",
    "fromVersion",
    "toVersion",
    "status",
    "triggerType",
    "actor",
    "reason",
)


def _client() -> ApiClient:
    try:
        settings = Settings()
    except ValueError as exc:
        typer.echo(f"Invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc
    return ApiClient(settings)


def describe_validation_errors(detail: list[Any]) -> str:
    """Return FastAPI's list of validation errors as one line naming each field."""
    parts = []
    for item in detail:
        location = [str(part) for part in item.get("loc", []) if part != "body"]
        parts.append(f"{'.'.join(location) or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def post(client: ApiClient, path: str, **kwargs: Any) -> Any:
    """POST ``path``; a validation error becomes one readable line."""
    try:
        return client.post(path, **kwargs)
    except ApiError as exc:
        if isinstance(exc.detail, list):
            raise ApiError(exc.status, describe_validation_errors(exc.detail)) from None
        raise


def print_table(row: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Print one record as aligned ``name  value`` lines."""
    width = max(len(name) for name in fields)
    for name in fields:
        value = row.get(name)
        typer.echo(f"{name.ljust(width)}  {'' if value is None else value}")


def describe_step(step: dict[str, Any]) -> str:
    """Return one line about a step: name, status, attempt, duration and error."""
    line = f"{step.get('name')}: {step.get('status')}"
    if (step.get("attempt") or 1) > 1:
        line += f" (attempt {step['attempt']})"
    if step.get("durationMs") is not None:
        line += f" in {step['durationMs']:.0f} ms"
    if step.get("error"):
        line += f": {step['error']}"
    return line


def watch_plan(client: ApiClient, plan_id: str, *, interval: float, timeout: float) -> str:
    """Print each step change of a plan until it is final; return its final status.

    The plan view comes from the stats service, which builds it from events, so it can return
    404 for a moment after the plan is created. A 404 is polled again like any other response.
    """
    deadline = time.monotonic() + timeout
    printed_steps: dict[tuple[str, int], str] = {}
    status = None
    while time.monotonic() < deadline:
        try:
            plan = client.get(f"/api/admin/rollbacks/{plan_id}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            plan = None
        if plan is not None:
            for step in plan.get("steps") or []:
                key = (str(step.get("name")), int(step.get("attempt") or 1))
                if printed_steps.get(key) != step.get("status"):
                    printed_steps[key] = str(step.get("status"))
                    typer.echo(describe_step(step))
            if plan.get("status") != status:
                status = plan.get("status")
                typer.echo(f"plan {plan_id}: {status}")
            if status in FINAL_STATUSES:
                if plan.get("error"):
                    typer.echo(f"error: {plan['error']}")
                return str(status)
        time.sleep(interval)
    typer.echo(
        f"Error: plan {plan_id} did not finish within {timeout:.0f} s: check it with "
        f"'travi rollback show {plan_id}'",
        err=True,
    )
    raise typer.Exit(1)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add the planner's commands to the ``deploy`` and ``rollback`` groups."""
    deploy = groups["deploy"]
    rollback = groups["rollback"]

    @deploy.command("record")
    def deploy_record(
        service: str = typer.Option(..., "--service", help="Service name."),
        env: str = typer.Option(..., "--env", help="Environment name."),
        version: str = typer.Option(..., "--version", help="Version that was deployed."),
        status: str = typer.Option(
            "succeeded", "--status", help="Deployment status: started, succeeded or failed."
        ),
        actor: str | None = typer.Option(
            None, "--actor", help="Who deployed (default: the token's name)."
        ),
    ) -> None:
        """Record a deployment, so that rollbacks know the history of versions."""
        body: dict[str, Any] = {
            "service": service,
            "environment": env,
            "version": version,
            "status": status,
        }
        if actor:
            body["actor"] = actor
        result = post(_client(), "/api/admin/deployments", json=body)
        typer.echo(
            f"Recorded {result['service']} {result['version']} in {result['environment']}: "
            f"{result['status']} (event {result['eventId']})."
        )

    @rollback.command("create")
    def rollback_create(
        service: str = typer.Option(..., "--service", help="Service name."),
        env: str = typer.Option(..., "--env", help="Environment name."),
        to: str = typer.Option(..., "--to", help="Target version to roll back to."),
        from_version: str | None = typer.Option(
            None, "--from", help="Version expected to be current; the request fails if it is not."
        ),
        reason: str = typer.Option("", "--reason", help="Why; required with --force."),
        force: bool = typer.Option(False, "--force", help="Allow a target marked bad."),
    ) -> None:
        """Create a pending manual rollback plan; run it with 'travi rollback execute ID'."""
        body: dict[str, Any] = {
            "service": service,
            "environment": env,
            "targetVersion": to,
            "reason": reason,
            "force": force,
        }
        if from_version:
            body["fromVersion"] = from_version
        plan = post(_client(), "/api/admin/rollbacks", json=body)
        print_table(plan, PLAN_FIELDS)

    @rollback.command("execute")
    def rollback_execute(
        plan_id: str = typer.Argument(..., help="Plan id from 'travi rollback create'."),
        watch: bool = typer.Option(False, "--watch", help="Print each step until the plan ends."),
        interval: float = typer.Option(
            1.0, "--interval", help="Seconds between polls with --watch."
        ),
        timeout: float = typer.Option(900.0, "--timeout", help="Seconds --watch waits at most."),
    ) -> None:
        """Run a pending plan."""
        client = _client()
        plan = post(client, f"/api/admin/rollbacks/{plan_id}/execute")
        typer.echo(
            f"Plan {plan['id']} is {plan['status']}: {plan['fromVersion']} -> {plan['toVersion']}."
        )
        if watch:
            final = watch_plan(client, plan["id"], interval=interval, timeout=timeout)
            if final != "completed":
                raise typer.Exit(1)

    @rollback.command("cancel")
    def rollback_cancel(
        plan_id: str = typer.Argument(..., help="Plan id."),
        reason: str = typer.Option("", "--reason", help="Why the plan is cancelled."),
    ) -> None:
        """Cancel a pending or running plan; traffic that was paused is resumed."""
        plan = post(_client(), f"/api/admin/rollbacks/{plan_id}/cancel", json={"reason": reason})
        typer.echo(f"Cancel requested for plan {plan['id']} ({plan['status']}).")
