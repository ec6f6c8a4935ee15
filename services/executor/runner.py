"""Run one plan's steps in order, with timeouts, retries, compensation and a heartbeat.

A :class:`PlanRunner` starts from the stored state of a plan: a fresh claim, or a takeover of
a plan whose executor died. It runs the first unfinished step and those after it, and records
every step before and after it runs. Traffic that it or its predecessor paused is resumed after
a failure, a timeout or a cancel too; a resume that keeps failing is escalated. The notify step
hands the outcome to the notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nats.errors import Error as NatsError
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import Tracer

from services.executor import backup
from services.executor.drivers.base import Target
from services.executor.drivers.registry import Adapters, build_adapters
from services.executor.errors import HandedBack, LeaseLost, PlanCancelled, StepFailed
from services.executor.events import EventSink, escalation, plan_finished, step_changed
from services.executor.metrics import ESCALATIONS, PLANS_FINISHED, PUBLISH_FAILURES, STEPS_FINISHED
from services.executor.repository import CancelRequest, ExecutorRepository, PlanState
from services.executor.sequence import (
    FINISHED_STATUSES,
    FORWARD_STEPS,
    SwitchRecovery,
    backoff_delay,
    cancel_interrupts,
    recover_switch,
)
from shared.contracts import StepName, utc_now
from shared.logs import bind
from shared.settings import Settings, StepPolicy

logger = logging.getLogger(__name__)

# Takeovers after which a plan is failed instead of resumed again: an executor that dies on
# the same plan every time must not keep the service paused in a loop.
MAX_TAKEOVERS = 3


@dataclass(frozen=True)
class Result:
    """The outcome of the steps before notify, with the failed step and its error."""

    outcome: str
    failed_step: StepName | None = None
    error: str | None = None


class PlanRunner:
    """Runs one plan for as long as this executor holds its lease."""

    def __init__(
        self,
        state: PlanState,
        *,
        repo: ExecutorRepository,
        sink: EventSink,
        settings: Settings,
        policies: dict[StepName, StepPolicy],
        tracer: Tracer,
    ) -> None:
        self.state = state
        self.plan = state.plan
        self.plan_id = str(state.plan.plan_id)
        self.repo = repo
        self.sink = sink
        self.settings = settings
        self.policies = policies
        self.tracer = tracer
        self.target = Target.from_plan(state.plan)
        self.adapters: Adapters | None = None
        self.traffic_paused = state.traffic_paused
        self.cancel_request: CancelRequest | None = None
        self.stopping = False
        # Set by a cancel or a stop, to end the drain's wait at once.
        self._wake = asyncio.Event()
        self._last_health_error: str | None = None

    def request_cancel(self, request: CancelRequest) -> None:
        """Note a cancel handled by this process; the next check point honours it."""
        self.cancel_request = request
        self._wake.set()

    def request_stop(self) -> None:
        """Stop at the next step boundary (or during the drain) and hand the plan back."""
        self.stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Run the plan under its trace and log ids until it finishes or the lease is lost."""
        token = otel_context.attach(propagate.extract(self.state.trace_context))
        try:
            with (
                bind(
                    plan_id=self.plan_id,
                    service=self.plan.service,
                    environment=self.plan.environment,
                ),
                self.tracer.start_as_current_span(
                    "executor run plan",
                    attributes={"travi.plan_id": self.plan_id, "travi.lease": self.state.lease},
                ),
            ):
                await self._run_with_heartbeat()
        finally:
            otel_context.detach(token)

    async def _run_with_heartbeat(self) -> None:
        main = asyncio.create_task(self._run())
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await asyncio.wait({main, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (main, heartbeat):
                task.cancel()
            results = await asyncio.gather(main, heartbeat, return_exceptions=True)
        if results[0] is None:
            # The plan finished; a heartbeat that raced with the final write does not matter.
            return
        if isinstance(results[0], HandedBack):
            logger.info("Handed plan %s back at a step boundary for a takeover.", self.plan_id)
            return
        for result in results:
            if isinstance(result, LeaseLost):
                logger.warning("Stopped plan %s: another executor took it over.", self.plan_id)
            elif isinstance(result, Exception):
                # The heartbeat stops too, so another executor takes the plan over.
                logger.error(
                    "Plan %s stopped on an unexpected error.", self.plan_id, exc_info=result
                )

    async def _heartbeat(self) -> None:
        interval = self.settings.executor.heartbeat_seconds
        failures = 0
        while True:
            await asyncio.sleep(interval)
            try:
                request = await self.repo.heartbeat(self.plan_id, self.state.lease, utc_now())
            except LeaseLost:
                raise
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next one.
                failures += 1
                if failures == 1:
                    logger.warning("Heartbeat of plan %s failed, retrying: %s", self.plan_id, exc)
                continue
            if failures:
                logger.info(
                    "Heartbeat of plan %s recovered after %d failures.", self.plan_id, failures
                )
                failures = 0
            if request is not None and self.cancel_request is None:
                self.request_cancel(request)

    async def _run(self) -> None:
        if self.state.outcome is None:
            result = await self._forward()
            await self._store_outcome(result)
        await self._compensate()
        await self._notify_and_finish()

    async def _forward(self) -> Result:
        if self.state.takeovers > MAX_TAKEOVERS:
            return Result(
                "failed",
                self._first_unfinished(),
                f"the plan was taken over {self.state.takeovers} times after executors stopped "
                "during it; it is failed so that it does not run again",
            )
        try:
            self.adapters = build_adapters(
                self.settings.executor, self.plan.environment, self.plan.service
            )
        except Exception as exc:  # noqa: BLE001 - it fails the plan, not the service.
            return await self._fail_before_start(f"invalid driver configuration: {exc}")

        for name in FORWARD_STEPS:
            step = self.state.steps[name]
            if step.status in FINISHED_STATUSES:
                continue
            if step.status == "failed":
                return Result("failed", name, step.error)
            if name == "switch_version" and step.status == "running":
                recovered = await self._recover_switch()
                if recovered is not None:
                    return recovered
                if self.state.steps[name].status == "succeeded":
                    continue
            try:
                error = await self._run_step(name)
            except PlanCancelled as exc:
                return Result("cancelled", None, str(exc))
            if error is not None:
                return Result("failed", name, error)
        return Result("completed")

    async def _fail_before_start(self, error: str) -> Result:
        """Fail the first unfinished step with ``error`` without running it."""
        name = self._first_unfinished() or "validate_target"
        now = utc_now()
        await self.repo.step_finished(
            self.plan_id,
            self.state.lease,
            name,
            status="failed",
            now=now,
            duration_ms=0.0,
            error=error,
        )
        step = self.state.steps[name]
        step.status, step.error = "failed", error
        message = step_changed(
            self.plan,
            name,
            "failed",
            max(step.attempt, 1),
            started_at=now,
            finished_at=now,
            duration_ms=0.0,
            error=error,
        )
        await self._emit(message)
        return Result("failed", name, error)

    def _first_unfinished(self) -> StepName | None:
        return next(
            (n for n in FORWARD_STEPS if self.state.steps[n].status not in FINISHED_STATUSES),
            None,
        )

    async def _recover_switch(self) -> Result | None:
        """Decide on a switch_version found running at a takeover, so the switch takes effect at
        most once. Return a failure Result, or None when the plan goes on."""
        assert self.adapters is not None
        driver = self.adapters.driver
        switched: bool | None = None
        if self.state.switch_started and not driver.switch_is_idempotent:
            try:
                switched = await driver.is_switched(self.target)
            except Exception as exc:  # noqa: BLE001 - an unknown state is handled as unknown.
                logger.warning("Could not read the switch state of plan %s: %s", self.plan_id, exc)

        decision = recover_switch(
            started=self.state.switch_started,
            idempotent=driver.switch_is_idempotent,
            switched=switched,
        )
        logger.info("Takeover found switch_version running; decision: %s.", decision.value)
        if decision is SwitchRecovery.RUN:
            return None
        step = self.state.steps["switch_version"]
        now = utc_now()
        if decision is SwitchRecovery.MARK_SUCCEEDED:
            note = (
                "the previous executor stopped during the switch, "
                "and the driver confirms that the target is in place"
            )
            await self._finish_step("switch_version", step.attempt, "succeeded", now, None, note)
            return None
        error = (
            "the previous executor stopped during switch_version and the "
            f"{driver.kind} driver cannot confirm whether the switch took effect; check "
            f"{self.plan.service} in {self.plan.environment} by hand"
        )
        await self._finish_step("switch_version", step.attempt, "failed", now, None, error)
        await self._escalate("switch_state_unknown", error)
        return Result("failed", "switch_version", error)

    async def _run_step(self, name: StepName) -> str | None:
        """Run one step with its timeout and retries. Return the last error, or None on success."""
        policy = self.policies[name]
        action = self._action(name)
        step = self.state.steps[name]
        first = step.attempt + 1
        last = max(policy.attempts, first)
        error: str | None = None
        for attempt in range(first, last + 1):
            error = await self._attempt(name, attempt, action, policy)
            if error is None:
                return None
            if attempt < last:
                delay = backoff_delay(policy, attempt)
                logger.warning(
                    "Step %s failed (attempt %d of %d), retrying in %.1f s: %s",
                    name,
                    attempt,
                    last,
                    delay,
                    error,
                )
                await asyncio.sleep(delay)
        logger.error("Step %s failed after %d attempts: %s", name, last - first + 1, error)
        return error

    async def _attempt(
        self, name: StepName, attempt: int, action: Callable[[], Awaitable[Any]], policy: StepPolicy
    ) -> str | None:
        if self.stopping:
            raise HandedBack(f"stopping before {name}")
        started_at = utc_now()
        interruptible = cancel_interrupts(name)
        if interruptible and self.cancel_request is not None:
            raise PlanCancelled(self.cancel_request.actor, self.cancel_request.reason)
        request = await self.repo.step_started(
            self.plan_id,
            self.state.lease,
            name,
            attempt,
            started_at,
            unless_cancelled=interruptible,
        )
        if request is not None:
            self.request_cancel(request)
            raise PlanCancelled(request.actor, request.reason)
        step = self.state.steps[name]
        step.status, step.attempt = "running", attempt
        if name == "pause_traffic":
            self.traffic_paused = True
        await self._emit(step_changed(self.plan, name, "running", attempt, started_at=started_at))

        clock = time.monotonic()
        try:
            await asyncio.wait_for(action(), policy.timeout_seconds)
        except PlanCancelled as exc:
            await self._finish_step(name, attempt, "skipped", started_at, clock, str(exc))
            raise
        except (LeaseLost, HandedBack):
            raise
        except TimeoutError:
            elapsed = time.monotonic() - clock
            error = f"timed out after {elapsed:.1f} s (step timeout {policy.timeout_seconds:g} s)"
            if name == "verify_health" and self._last_health_error:
                error += f"; last health check: {self._last_health_error}"
        except StepFailed as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a driver bug fails the step, not the executor.
            logger.exception("Step %s raised an unexpected error.", name)
            error = f"{type(exc).__name__}: {exc}"
        else:
            await self._finish_step(name, attempt, "succeeded", started_at, clock, None)
            return None
        await self._finish_step(name, attempt, "failed", started_at, clock, error)
        return error

    async def _finish_step(
        self,
        name: StepName,
        attempt: int,
        status: str,
        started_at: Any,
        clock: float | None,
        error: str | None,
    ) -> None:
        now = utc_now()
        duration_ms = (time.monotonic() - clock) * 1000 if clock is not None else None
        await self.repo.step_finished(
            self.plan_id,
            self.state.lease,
            name,
            status=status,
            now=now,
            duration_ms=duration_ms,
            error=error,
        )
        step = self.state.steps[name]
        step.status, step.error = status, error
        if name == "resume_traffic" and status == "succeeded":
            self.traffic_paused = False
        STEPS_FINISHED.labels(step=name, status=status).inc()
        await self._emit(
            step_changed(
                self.plan,
                name,
                status,
                max(attempt, 1),
                started_at=started_at,
                finished_at=now,
                duration_ms=duration_ms,
                error=error,
            )
        )

    def _action(self, name: StepName) -> Callable[[], Awaitable[Any]]:
        if name == "notify":
            # The only step that needs no driver, so it runs when the configuration is invalid.
            return self._publish_outcome
        assert self.adapters is not None
        driver, traffic, target = self.adapters.driver, self.adapters.traffic, self.target
        actions: dict[StepName, Callable[[], Awaitable[Any]]] = {
            "validate_target": lambda: driver.validate_target(target),
            "pause_traffic": lambda: traffic.pause(target),
            "drain_connections": self._drain,
            "switch_version": self._switch,
            "verify_health": self._verify_health,
            "resume_traffic": lambda: traffic.resume(target),
            "cleanup": lambda: driver.cleanup(target),
            "notify": self._publish_outcome,
        }
        return actions[name]

    async def _drain(self) -> None:
        """Wait until no request is in flight (or the fixed drain passed); a cancel stops it."""
        assert self.adapters is not None
        traffic = self.adapters.traffic
        started = time.monotonic()
        poll = min(self.settings.executor.heartbeat_seconds, 0.5)
        while True:
            if self.cancel_request is not None:
                raise PlanCancelled(self.cancel_request.actor, self.cancel_request.reason)
            if self.stopping:
                # Safe to stop here: the next executor runs the drain again.
                raise HandedBack("stopping during the drain")
            count = await traffic.in_flight(self.target)
            if count == 0:
                return
            if count is None and time.monotonic() - started >= traffic.drain_seconds:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)

    async def _switch(self) -> None:
        assert self.adapters is not None
        if self.adapters.config.backup_before_switch:
            info = await backup.back_up(self.settings, self.adapters.config, self.target)
            logger.info("Backed up the database before the switch to %s.", info.path)
        await self.repo.switch_started(self.plan_id, self.state.lease, utc_now())
        self.state.switch_started = True
        await self.adapters.driver.switch(self.target)

    async def _verify_health(self) -> None:
        """Probe health until it passes; the step timeout ends the polling."""
        assert self.adapters is not None
        interval = self.adapters.health_interval
        while True:
            try:
                await self.adapters.driver.check_health(self.target)
            except StepFailed as exc:
                self._last_health_error = str(exc)
                logger.debug("Health check failed, polling again: %s", exc)
            else:
                return
            await asyncio.sleep(interval)

    async def _store_outcome(self, result: Result) -> None:
        now = utc_now()
        pending = [
            name
            for name in FORWARD_STEPS
            if self.state.steps[name].status in {"pending", "running"}
            and not (name == "resume_traffic" and self.traffic_paused)
        ]
        if result.outcome != "completed":
            reason = f"plan {result.outcome}" + (
                f" at {result.failed_step}" if result.failed_step else ""
            )
            await self.repo.skip_steps(self.plan_id, self.state.lease, pending, now, reason)
            for name in pending:
                step = self.state.steps[name]
                step.status = "skipped"
                await self._emit(
                    step_changed(
                        self.plan,
                        name,
                        "skipped",
                        max(step.attempt, 1),
                        started_at=None,
                        finished_at=now,
                        error=reason,
                    )
                )
        await self.repo.record_outcome(
            self.plan_id,
            self.state.lease,
            outcome=result.outcome,
            failed_step=result.failed_step,
            error=result.error,
            now=now,
        )
        self.state.outcome, self.state.failed_step = result.outcome, result.failed_step
        if result.outcome == "cancelled" and self.cancel_request is not None:
            self.state.cancel_actor = self.cancel_request.actor
            self.state.cancel_reason = self.cancel_request.reason
        self.state.error, self.state.finished_at = result.error, now
        logger.info(
            "Plan %s %s%s.",
            self.plan_id,
            result.outcome,
            f": {result.error}" if result.error else "",
        )

    async def _compensate(self) -> None:
        """Resume traffic that is still paused; a failure is added to the error and escalated."""
        if not self.traffic_paused:
            return
        logger.info("Resuming the traffic of %s, which the plan paused.", self.plan.service)
        try:
            if self.adapters is None:
                self.adapters = build_adapters(
                    self.settings.executor, self.plan.environment, self.plan.service
                )
        except Exception as exc:  # noqa: BLE001 - reported as a failed resume below.
            error: str | None = f"invalid driver configuration: {exc}"
        else:
            error = await self._run_step("resume_traffic")
        message = None
        if error is not None:
            message = f"traffic could not be resumed: {error}"
            if self.state.error:
                self.state.error = f"{self.state.error}; {message}"
            else:
                self.state.error = message
        # The plan ends when its traffic flows again (or the resume gave up), not when the
        # outcome was first stored, so the outcome's duration includes the resume.
        finished_at = utc_now()
        await self.repo.record_compensation(
            self.plan_id, self.state.lease, error=self.state.error, now=finished_at
        )
        self.state.finished_at = finished_at
        if message is not None:
            await self._escalate(
                "traffic_not_resumed", f"{self.plan.service} in {self.plan.environment}: {message}"
            )

    async def _notify_and_finish(self) -> None:
        error = (
            await self._run_step("notify")
            if self.state.steps["notify"].status != "succeeded"
            else None
        )
        watch_until = None
        if self.state.outcome == "completed" and self.settings.executor.watch_seconds > 0:
            watch_until = utc_now() + timedelta(seconds=self.settings.executor.watch_seconds)
        await self.repo.finish(
            self.plan_id,
            self.state.lease,
            outcome=self.state.outcome or "failed",
            watch_until=watch_until,
            published=error is None,
        )
        PLANS_FINISHED.labels(outcome=self.state.outcome).inc()

    async def _publish_outcome(self) -> None:
        try:
            await self.sink.send(*plan_finished(self.state))
        except (OSError, TimeoutError, NatsError) as exc:
            raise StepFailed(f"could not publish the outcome: {type(exc).__name__}: {exc}") from exc

    async def _emit(self, message: tuple[str, Any]) -> None:
        """Publish a step event; a failure is logged and counted, and the plan goes on."""
        try:
            await self.sink.send(*message)
        except Exception as exc:  # noqa: BLE001 - progress events must not stop a rollback.
            PUBLISH_FAILURES.labels(event=type(message[1]).__name__).inc()
            logger.warning(
                "Could not publish %s on %s: %s", type(message[1]).__name__, message[0], exc
            )

    async def _escalate(self, reason: str, detail: str) -> None:
        ESCALATIONS.labels(reason=reason).inc()
        await self._emit(escalation(self.plan, reason, detail))
