"""The executor of one process: claims plans from commands, runs them, sweeps for stale ones.

Replicas share the command consumer, so an execute command reaches one of them. The claim in
the database makes sure only one runs the plan even when a command is delivered twice. The
command is acknowledged as soon as the claim is committed, not when the plan ends, so a plan
that runs longer than the consumer's ack wait is never redelivered. From then on the plan row
and its heartbeat, not the message, keep the plan alive. Every replica also sweeps for plans
whose heartbeat went stale (their executor died), takes them over, and publishes outcomes that
could not be published before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import timedelta

from opentelemetry import propagate
from opentelemetry.trace import Tracer

from services.executor.drivers.registry import validate_all
from services.executor.errors import LeaseLost
from services.executor.events import EventSink, plan_finished
from services.executor.metrics import COMMANDS_IGNORED, PUBLISH_FAILURES, TAKEOVERS
from services.executor.repository import (
    CancelRequest,
    ExecutorRepository,
    PlanState,
    claimed_state,
)
from services.executor.runner import PlanRunner
from services.executor.sequence import resolve_policies
from shared.contracts import CancelPlan, ExecutePlan, PlanCreated, utc_now
from shared.logs import bind
from shared.settings import Settings

logger = logging.getLogger(__name__)

# Environment and service of the plan that :meth:`Executor.warm_up` stores and rolls back.
WARM_UP_NAME = "travi-warm-up"
# How long a stopping executor lets its plans run to their end before it requests that they stop,
# seconds. A plan handed back mid-way keeps its traffic paused until an executor takes it over,
# which under a single-process ``travi up`` means until the next start. Most plans end within
# this time. It stays below the 10 s that ``docker stop`` waits before SIGKILL.
FINISH_GRACE_SECONDS = 8.0
# How long a stopping executor then waits for its runners to reach a step boundary, seconds.
STOP_GRACE_SECONDS = 10.0


def replica_id() -> str:
    """Return a name for this process that no other executor uses."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Executor:
    """Runs plans in tasks it keeps, and takes over plans whose executor died."""

    def __init__(
        self, *, settings: Settings, repo: ExecutorRepository, sink: EventSink, tracer: Tracer
    ) -> None:
        validate_all(settings.executor)
        self.settings = settings
        self.policies = resolve_policies(settings.executor.steps)
        self.repo = repo
        self.sink = sink
        self.tracer = tracer
        self.owner = replica_id()
        self.runners: dict[str, tuple[PlanRunner, asyncio.Task[None]]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the sweeper; it takes over stale plans at once and then every heartbeat."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="executor-sweeper")
        logger.info("Executor %s started.", self.owner)

    async def warm_up(self) -> None:
        """Claim a plan and start its first step once, rolled back, so the first real plan
        after a start does not pay for compiling the statements."""
        plan = PlanCreated(
            plan_id=uuid.uuid4(),
            environment=WARM_UP_NAME,
            service=WARM_UP_NAME,
            from_version="v2",
            to_version="v1",
            trigger="error_rate",
            trigger_type="automatic",
            actor="system",
            created_at=utc_now(),
        )
        try:
            await self.repo.warm_up(plan, self.owner, utc_now())
        except Exception:  # noqa: BLE001 - only the first plan is slower without it.
            logger.warning(
                "Warming up the claim path failed, so the first plan will start more slowly.",
                exc_info=True,
            )

    async def stop(self) -> None:
        """Stop the sweeper, let plans finish or reach a step boundary, and hand the rest back.

        Plans first get ``FINISH_GRACE_SECONDS`` to end. A runner still inside a step after a
        further ``STOP_GRACE_SECONDS`` is cancelled. Its step is left running, and the next
        executor resumes it by the takeover rules.
        """
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        running = list(self.runners.items())
        if running:
            await asyncio.wait([task for _, (_, task) in running], timeout=FINISH_GRACE_SECONDS)
        for _plan_id, (runner, task) in running:
            if not task.done():
                runner.request_stop()
        tasks = [task for _, (_, task) in running]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for plan_id, (runner, _task) in running:
            try:
                await self.repo.release(plan_id, runner.state.lease)
            except LeaseLost:
                pass  # The plan finished, or another executor owns it now.
            except Exception as exc:  # noqa: BLE001 - a plan not released goes stale instead.
                logger.warning("Could not hand plan %s back: %s", plan_id, exc)
        logger.info("Executor %s stopped; %d running plans handed back.", self.owner, len(running))

    async def execute(self, command: ExecutePlan) -> None:
        """Claim the plan and start running it, or ignore a plan that was handled before."""
        plan = command.plan
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        now = utc_now()
        result = await self.repo.claim(
            plan, actor=command.actor, owner=self.owner, trace_context=carrier, now=now
        )
        if result != "claimed":
            COMMANDS_IGNORED.labels(status=result).inc()
            logger.info("Ignored the execute command of plan %s: it is %s.", plan.plan_id, result)
            return
        # The claim inserted the row, so its values are known without reading it back. A cancel
        # recorded after the claim is found by the runner's first step_started.
        state = claimed_state(plan, actor=command.actor, trace_context=carrier, now=now)
        logger.info(
            "Claimed plan %s: %s in %s to %s.",
            plan.plan_id,
            plan.service,
            plan.environment,
            plan.to_version,
        )
        self._spawn(state)

    async def cancel(self, command: CancelPlan) -> None:
        """Record a cancel; a plan that never started is finished as cancelled at once."""
        plan = command.plan
        plan_id = str(plan.plan_id)
        result = await self.repo.record_cancel(
            plan, actor=command.actor, reason=command.reason, now=utc_now()
        )
        logger.info("Cancel of plan %s by %s: %s.", plan_id, command.actor, result)
        if result == "requested" and plan_id in self.runners:
            self.runners[plan_id][0].request_cancel(CancelRequest(command.actor, command.reason))
        if result in {"tombstoned", "finished"}:
            await self._publish_unpublished(plan_id)

    def _spawn(self, state: PlanState) -> None:
        plan_id = str(state.plan.plan_id)
        runner = PlanRunner(
            state,
            repo=self.repo,
            sink=self.sink,
            settings=self.settings,
            policies=self.policies,
            tracer=self.tracer,
        )
        task = asyncio.create_task(runner.run(), name=f"plan-{plan_id}")
        self.runners[plan_id] = (runner, task)
        task.add_done_callback(lambda _task: self._forget(plan_id, runner))

    def _forget(self, plan_id: str, runner: PlanRunner) -> None:
        if plan_id in self.runners and self.runners[plan_id][0] is runner:
            del self.runners[plan_id]

    async def _sweep_forever(self) -> None:
        interval = self.settings.executor.heartbeat_seconds
        failures = 0
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again.
                failures += 1
                if failures == 1:
                    logger.warning("Sweep for stale plans failed, retrying: %s", exc)
            else:
                if failures:
                    logger.info("Sweep for stale plans recovered after %d failures.", failures)
                failures = 0
            await asyncio.sleep(interval)

    async def sweep_once(self) -> int:
        """Take over the stale plans this executor wins and republish lost outcomes."""
        now = utc_now()
        # NOTE: heartbeats and this cutoff come from each replica's own clock, so replicas'
        # clocks must agree to well within stale_after_seconds, or a live plan looks stale.
        cutoff = now - timedelta(seconds=self.settings.executor.stale_after_seconds)
        taken = 0
        for plan_id, lease in await self.repo.stale_plans(cutoff):
            if plan_id in self.runners:
                continue
            try:
                if not await self.repo.take_over(
                    plan_id, lease, owner=self.owner, now=now, cutoff=cutoff
                ):
                    continue
                state = await self.repo.load(plan_id)
            except ValueError as exc:
                # A stored plan that no longer validates would stop every sweep at this row,
                # so the other stale plans would never be taken over.
                logger.error(
                    "Skipped stale plan %s: its stored plan is invalid (%s). Fix or delete its "
                    "executor_plans row.",
                    plan_id,
                    exc,
                )
                continue
            if state is None:
                continue
            TAKEOVERS.inc()
            taken += 1
            with bind(
                plan_id=plan_id, service=state.plan.service, environment=state.plan.environment
            ):
                logger.warning(
                    "Took over plan %s (lease %d): its heartbeat was older than %g s.",
                    plan_id,
                    state.lease,
                    self.settings.executor.stale_after_seconds,
                )
            self._spawn(state)
        for plan_id in await self.repo.unpublished_outcomes(cutoff):
            await self._publish_unpublished(plan_id)
        return taken

    async def _publish_unpublished(self, plan_id: str) -> None:
        state = await self.repo.load(plan_id)
        if state is None or state.outcome_published or state.status == "in_progress":
            return
        try:
            await self.sink.send(*plan_finished(state))
        except Exception as exc:  # noqa: BLE001 - the sweeper publishes it later.
            PUBLISH_FAILURES.labels(event="PlanFinished").inc()
            logger.warning("Could not publish the outcome of plan %s; will retry: %s", plan_id, exc)
            return
        await self.repo.mark_published(plan_id)
