"""Cancels as an operator gives them: the reason must reach the outcome, whenever it lands."""

from __future__ import annotations

import pytest

from shared.contracts import CancelPlan
from tests.integration.executor_helpers.fakes import ListSink, Recorder
from tests.integration.test_executor_runner import (  # noqa: F401 - fixtures used by name
    fake_adapters,
    make_executor,
    open_repo,
    plan_created,
)


@pytest.fixture
async def repo(sqlite_url):
    async with open_repo(sqlite_url) as repository:
        yield repository


async def test_cancel_before_start_keeps_reason(repo) -> None:
    sink = ListSink()
    executor = make_executor(repo, sink, Recorder())
    plan = plan_created()

    await executor.cancel(CancelPlan(plan=plan, actor="bob", reason="wrong target"))

    state = await repo.load(str(plan.plan_id))
    finished = sink.of_type("PlanFinished")
    assert state.status == "cancelled"
    assert len(finished) == 1
    assert finished[0].actor == "bob"
    assert finished[0].error == "cancelled by bob: wrong target"


async def test_cancel_before_start_without_reason(repo) -> None:
    sink = ListSink()
    executor = make_executor(repo, sink, Recorder())
    plan = plan_created()

    await executor.cancel(CancelPlan(plan=plan, actor="bob"))

    finished = sink.of_type("PlanFinished")
    assert len(finished) == 1
    assert finished[0].error == "cancelled by bob"
