"""The planner's CLI helpers: step lines and following a plan until it ends."""

from __future__ import annotations

import pytest
import typer

from services.planner.cli import describe_step, describe_validation_errors, watch_plan
from shared.client import ApiError

PLAN_ID = "7f1c0f7e-8a43-4a5e-9d55-3f4b7a3c2d10"


class ScriptedClient:
    """Returns the next scripted response to each GET, and raises a scripted exception."""

    def __init__(self, *responses: object) -> None:
        self.responses = list(responses)
        self.paths: list[str] = []

    def get(self, path: str) -> object:
        self.paths.append(path)
        response = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(response, Exception):
            raise response
        return response


def plan(status: str, *steps: dict, error: str | None = None) -> dict:
    return {"id": PLAN_ID, "status": status, "steps": list(steps), "error": error}


def step(
    name: str,
    status: str,
    attempt: int = 1,
    duration: float | None = None,
    error: str | None = None,
) -> dict:
    return {
        "name": name,
        "status": status,
        "attempt": attempt,
        "durationMs": duration,
        "error": error,
    }


def test_describe_step_full():
    line = describe_step(
        step("switch_version", "failed", attempt=2, duration=5012.4, error="timed out")
    )
    assert line == "switch_version: failed (attempt 2) in 5012 ms: timed out"


def test_describe_step_running():
    assert describe_step(step("pause_traffic", "running")) == "pause_traffic: running"


def test_watch_prints_each_change_once(capsys):
    client = ScriptedClient(
        ApiError(404, "rollback plan not found"),
        plan("in_progress", step("validate_target", "running")),
        plan("in_progress", step("validate_target", "running")),
        plan("in_progress", step("validate_target", "succeeded", duration=80)),
        plan(
            "completed",
            step("validate_target", "succeeded", duration=80),
            step("notify", "succeeded", duration=200),
        ),
    )

    final = watch_plan(client, PLAN_ID, interval=0, timeout=30)

    assert final == "completed"
    assert client.paths[0] == f"/api/admin/rollbacks/{PLAN_ID}"
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "validate_target: running",
        f"plan {PLAN_ID}: in_progress",
        "validate_target: succeeded in 80 ms",
        "notify: succeeded in 200 ms",
        f"plan {PLAN_ID}: completed",
    ]


def test_watch_prints_error_of_failed_plan(capsys):
    client = ScriptedClient(plan("failed", error="verify_health: unhealthy"))

    assert watch_plan(client, PLAN_ID, interval=0, timeout=30) == "failed"
    assert "error: verify_health: unhealthy" in capsys.readouterr().out


def test_watch_times_out(capsys):
    client = ScriptedClient(plan("in_progress"))

    with pytest.raises(typer.Exit) as caught:
        watch_plan(client, PLAN_ID, interval=0.01, timeout=0.05)

    assert caught.value.exit_code == 1
    assert "did not finish" in capsys.readouterr().err


def test_watch_raises_other_api_errors():
    client = ScriptedClient(ApiError(401, "invalid bearer token"))

    with pytest.raises(ApiError):
        watch_plan(client, PLAN_ID, interval=0, timeout=30)


def test_validation_errors_one_line():
    detail = [
        {"loc": ["body", "service"], "msg": "Value error, use lowercase letters"},
        {"loc": ["body", "status"], "msg": "Input should be 'started', 'succeeded' or 'failed'"},
    ]
    assert describe_validation_errors(detail) == (
        "service: Value error, use lowercase letters; "
        "status: Input should be 'started', 'succeeded' or 'failed'"
    )
