"""The ``travi deploy`` and ``travi rollback`` commands against a running planner and stats.

The executor is played by the test: it waits for the execute command on the bus and publishes
the step and outcome events that the stats service turns into the plan view ``--watch`` polls.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import nats
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.runner import Runtime
from shared.contracts import PlanFinished, StepChanged, utc_now
from tests.integration.test_planner_bus import by_subject, wait_for_stream

pytestmark = pytest.mark.nats

ENV = "production"
SVC = "checkout"


def cli_env(base_url: str, state_dir: Path, token: str | None = "operator-token") -> dict[str, str]:
    env = {"TRAVI_API_URL": base_url, "TRAVI_STATE_DIR": str(state_dir)}
    if token:
        env["TRAVI_TOKEN"] = token
    return env


async def invoke(args: list[str], env: dict[str, str]):
    """Run a command in a thread, so the HTTP server in this event loop can serve its requests."""
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


async def run_travi(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run the installed ``travi`` command as a user would, through its error handling."""
    travi = str(Path(sys.executable).with_name("travi"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAVI_")}
    process = await asyncio.create_subprocess_exec(
        travi,
        *args,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def play_executor(url: str, plan_id: str) -> None:
    """Publish two steps and a completed outcome, as the executor would."""
    connection = await nats.connect(url)
    js = connection.jetstream()
    now = utc_now()
    events = [
        (
            f"rollback.step.{ENV}.{SVC}",
            StepChanged(
                plan_id=plan_id,
                environment=ENV,
                service=SVC,
                step="validate_target",
                status="running",
                started_at=now,
            ),
        ),
        (
            f"rollback.step.{ENV}.{SVC}",
            StepChanged(
                plan_id=plan_id,
                environment=ENV,
                service=SVC,
                step="validate_target",
                status="succeeded",
                started_at=now,
                finished_at=now,
                duration_ms=80.0,
            ),
        ),
        (
            f"rollback.outcome.{ENV}.{SVC}",
            PlanFinished(
                plan_id=plan_id,
                environment=ENV,
                service=SVC,
                from_version="v3",
                to_version="v2",
                trigger="manual",
                trigger_type="manual",
                outcome="completed",
                started_at=now,
                finished_at=now,
                duration_ms=80.0,
            ),
        ),
    ]
    for subject, event in events:
        await js.publish(
            subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": str(event.event_id)}
        )
        await asyncio.sleep(0.2)
    await connection.close()


async def test_cli_create_execute_watch(nats_server, database_url, make_settings, tmp_path):
    url = nats_server.url
    settings = make_settings(nats_url=url, database_url=database_url)
    async with Runtime(settings, ["planner", "stats"]) as runtime:
        env = cli_env(runtime.base_url, tmp_path / "cli")
        for version in ("v1", "v2", "v3"):
            recorded = await invoke(
                [
                    "deploy",
                    "record",
                    "--service",
                    SVC,
                    "--env",
                    ENV,
                    "--version",
                    version,
                    "--status",
                    "succeeded",
                    "--actor",
                    "ci",
                ],
                env,
            )
            assert recorded.exit_code == 0, recorded.output
        created = await invoke(
            [
                "rollback",
                "create",
                "--service",
                SVC,
                "--env",
                ENV,
                "--to",
                "v2",
                "--reason",
                "errors after v3",
            ],
            env,
        )
        assert created.exit_code == 0, created.output
        plan_id = created.output.split()[1]

        watch = asyncio.create_task(
            invoke(
                ["rollback", "execute", plan_id, "--watch", "--interval", "0.1", "--timeout", "60"],
                env,
            )
        )
        events = await wait_for_stream(url, lambda e: by_subject(e, "rollback.execute"))
        await play_executor(url, plan_id)
        executed = await watch

    assert "Recorded checkout v3 in production: succeeded" in recorded.output
    assert "status       pending" in created.output
    assert "actor        alice" in created.output
    [command] = by_subject(events, "rollback.execute")
    assert command["plan"]["plan_id"] == plan_id
    assert command["plan"]["from_version"] == "v3"
    assert executed.exit_code == 0, executed.output
    lines = executed.output.splitlines()
    assert lines[0] == f"Plan {plan_id} is in_progress: v3 -> v2."
    assert "validate_target: succeeded in 80 ms" in lines
    assert lines[-1] == f"plan {plan_id}: completed"


async def test_cli_errors_are_one_line(nats_server, sqlite_url, make_settings, tmp_path):
    settings = make_settings(nats_url=nats_server.url, database_url=sqlite_url)
    async with Runtime(settings, ["planner"]) as runtime:
        env = cli_env(runtime.base_url, tmp_path / "cli")
        await invoke(["deploy", "record", "--service", SVC, "--env", ENV, "--version", "v1"], env)
        rejected, invalid, no_token = await asyncio.gather(
            run_travi(["rollback", "create", "--service", SVC, "--env", ENV, "--to", "v1"], env),
            run_travi(
                [
                    "deploy",
                    "record",
                    "--service",
                    "Check Out",
                    "--env",
                    ENV,
                    "--version",
                    "v2",
                    "--status",
                    "done",
                ],
                env,
            ),
            run_travi(
                ["rollback", "cancel", "7f1c0f7e-8a43-4a5e-9d55-3f4b7a3c2d10"],
                cli_env(runtime.base_url, tmp_path / "empty", token=None),
            ),
        )

    code, _, err = rejected
    assert code == 1
    assert err.strip().splitlines() == [
        (
            "Error: HTTP 409: rejected targetVersion 'v1': the target is the current version v1: "
            "choose an earlier version"
        )
    ]
    code, _, err = invalid
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith("Error: HTTP 422: service: Value error, use 1-63 characters")
    assert "; status: Input should be 'started', 'succeeded' or 'failed'" in line
    code, _, err = no_token
    assert code == 1
    assert "HTTP 401" in err
