"""The ``travi`` command line."""

from __future__ import annotations

import asyncio
import importlib
import sys

import typer

from services.runner import SERVICE_NAMES
from shared.errors import TraviError
from shared.logs import setup_logging
from shared.settings import Settings

app = typer.Typer(help="TRAVI: automated rollbacks for services that go bad.", no_args_is_help=True)
groups = {
    "rollback": typer.Typer(help="Create, run, cancel and inspect rollback plans.", no_args_is_help=True),
    "deploy": typer.Typer(help="Record deployments.", no_args_is_help=True),
    "db": typer.Typer(help="Back up and restore the application's database.", no_args_is_help=True),
}
for group_name, group in groups.items():
    app.add_typer(group, name=group_name)

# Modules that add commands with register(app, groups); each is optional until it exists.
COMMAND_MODULES = (
    "services.planner.cli",
    "services.stats.cli",
    "services.backup_cli",
    "services.demo",
)


def load_settings() -> Settings:
    """Read the settings from the environment, or exit with the validation error."""
    try:
        return Settings()
    except ValueError as exc:
        typer.echo(f"Invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def up() -> None:
    """Run all five services, an embedded nats-server and SQLite (unless URLs are set)."""
    from services.up import up as run_up

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    asyncio.run(run_up(settings))


@app.command()
def run(service: str = typer.Argument(..., help=f"One of: {', '.join(SERVICE_NAMES)}.")) -> None:
    """Run one service against TRAVI_NATS_URL and TRAVI_DATABASE_URL."""
    from services.up import run_services

    if service not in SERVICE_NAMES:
        typer.echo(f"Unknown service {service!r}: use one of {', '.join(SERVICE_NAMES)}.", err=True)
        raise typer.Exit(2)
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    asyncio.run(run_services(settings, [service]))


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(app, groups)


_register_commands()


def main() -> None:
    """Entry point of the ``travi`` console script."""
    try:
        app()
    except TraviError as exc:
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
