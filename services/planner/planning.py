"""The planner's use cases: breaches, deployments, outcomes and operators' requests.

Each use case decides and stores in one transaction, together with the events it will publish
(an outbox), and publishes them after the commit. A crash between the commit and the publish
loses nothing: a redelivered breach publishes its stored events instead of deciding again, and
the outbox relay publishes whatever an HTTP request left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.planner import events, repository
from services.planner.decision import (
    IgnoreStale,
    StartPlan,
    Suppress,
    cooldown_for,
    decide,
    describe_version,
)
from services.planner.deferral import (
    DropDeferred,
    Postpone,
    WaitForPlan,
    derived_breach,
    recheck,
)
from services.planner.errors import (
    DeploymentRejected,
    PlanConflict,
    PlanNotFound,
    RollbackRejected,
)
from services.planner.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    OutboxMessage,
    Plan,
    Suppression,
)
from services.planner.targets import check_manual_target
from shared.bus import CANCEL_SUBJECT, EXECUTE_SUBJECT
from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    CancelPlan,
    Contract,
    DeploymentRecorded,
    ExecutePlan,
    PlanCreated,
    PlanFinished,
    utc_now,
)
from shared.db import Database
from shared.logs import bind
from shared.names import subject
from shared.settings import PlannerSettings

logger = logging.getLogger(__name__)

Publisher = Callable[[str, Contract], Awaitable[None]]
Clock = Callable[[], datetime]

# Actor recorded on automatic plans and the commands the planner sends for them.
SYSTEM_ACTOR = "system"
# How far a deployment record's time may be ahead of the planner's clock. The current version
# is the newest successful record by that time, so a record far in the future would stay
# current and hide every later deployment.
MAX_DEPLOYMENT_CLOCK_SKEW = timedelta(minutes=5)
# Environment and service of the breach that :meth:`Planner.warm_up` stores and rolls back.
WARM_UP_NAME = "travi-warm-up"
# Transactions tried per breach: a lost race on the active-plan index is decided again.
BREACH_ATTEMPTS = 3
OUTBOX_MODELS: dict[str, type[Contract]] = {
    model.__name__: model
    for model in (PlanCreated, ExecutePlan, CancelPlan, BreachSuppressed, DeploymentRecorded)
}

BREACH_DECISIONS = Counter(
    "travi_planner_breaches_total",
    "Breaches the planner handled, by decision (plan, a suppression reason, stale, duplicate).",
    ["decision"],
)
OUTBOX_FAILURES = Counter(
    "travi_planner_outbox_publish_failures_total",
    "Outbox messages whose publish failed and that wait for a later attempt.",
)
DEFERRED_RECHECKS = Counter(
    "travi_planner_deferred_rechecks_total",
    "Breaches deferred by a cooldown and re-checked after it, by result "
    "(redecided, dropped, invalid).",
    ["result"],
)
UNKNOWN_OUTCOMES = Counter(
    "travi_planner_unknown_outcomes_total",
    "Plan outcomes naming a plan this planner never stored.",
)


@dataclass(frozen=True)
class ManualRollback:
    """An operator's request for a pending plan."""

    environment: str
    service: str
    target_version: str
    from_version: str | None = None
    reason: str = ""
    force: bool = False


class Planner:
    """The planner's use cases over its database and a publisher."""

    def __init__(
        self,
        db: Database,
        publish: Publisher,
        settings: PlannerSettings,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self._publish = publish
        self.settings = settings
        self.clock = clock

    # Breaches.

    async def handle_breach(self, breach: BreachDetected, source_subject: str) -> None:
        """Turn a breach into a plan, a suppression or nothing, then publish the result."""
        with bind(event_id=breach.event_id, environment=breach.environment, service=breach.service):
            stored: list[OutboxMessage] | None = None
            for attempt in range(1, BREACH_ATTEMPTS + 1):
                try:
                    stored = await self._decide_breach(breach, source_subject)
                    break
                except IntegrityError:
                    if attempt == BREACH_ATTEMPTS:
                        raise
                    # Another replica stored a plan or this breach first, so the next attempt
                    # reads that row and decides again.
                    logger.info("Lost a race on breach %s; deciding again.", breach.event_id)
            if stored is None:
                await self.publish_outbox(source_id=str(breach.event_id), strict=True)
            else:
                # The rows this decision committed are all the source's outbox, so they are
                # published from memory without reading the outbox back.
                await self._publish_messages(stored, strict=True)

    async def _decide_breach(
        self, breach: BreachDetected, source_subject: str
    ) -> list[OutboxMessage] | None:
        """Decide a breach in one transaction and return the outbox rows it committed.

        Return None for a breach handled before: its stored events have to be read back.
        """
        now = self.clock()
        stored: list[OutboxMessage] = []
        async with self.db.sessions() as session, session.begin():
            # The inbox insert is the first statement, so on SQLite it takes the write lock.
            if not await repository.claim_inbox_entry(
                session, breach.event_id, source_subject, now
            ):
                BREACH_DECISIONS.labels(decision="duplicate").inc()
                logger.info(
                    "Breach %s was handled before; publishing its stored events.", breach.event_id
                )
                return None
            await self._decide_recorded_breach(session, breach, now, stored)
        return stored

    async def _decide_new_breach(
        self,
        session: AsyncSession,
        breach: BreachDetected,
        source_subject: str,
        now: datetime,
        stored: list[OutboxMessage] | None = None,
    ) -> str:
        """Record ``breach`` in the inbox, decide it and store the result; return the decision.

        The outbox rows it adds are appended to ``stored``.
        """
        await repository.add_inbox_entry(session, breach.event_id, source_subject, now)
        return await self._decide_recorded_breach(session, breach, now, stored)

    async def _decide_recorded_breach(
        self,
        session: AsyncSession,
        breach: BreachDetected,
        now: datetime,
        stored: list[OutboxMessage] | None = None,
    ) -> str:
        """Decide a breach already in the inbox and store the result; return the decision."""
        stored = [] if stored is None else stored
        context = await repository.load_breach_context(
            session, breach.environment, breach.service, breach.trigger, now
        )
        decision = decide(
            breach, context, now=now, loop_guard_max=self.settings.loop_guard_max_per_hour
        )
        if isinstance(decision, StartPlan):
            stored.extend(await self._start_automatic_plan(session, breach, decision, now))
            return "plan"
        if isinstance(decision, Suppress):
            stored.append(await self._suppress(session, breach, decision, now))
            return decision.reason
        self._ignore_stale(breach, decision)
        return "stale"

    async def _start_automatic_plan(
        self, session: AsyncSession, breach: BreachDetected, decision: StartPlan, now: datetime
    ) -> list[OutboxMessage]:
        """Store the plan of ``decision``; return its outbox rows: PlanCreated, ExecutePlan."""
        plan, messages = await self._store_automatic_plan(session, breach, decision, now)
        BREACH_DECISIONS.labels(decision="plan").inc()
        logger.info(
            "Created automatic plan %s from %s to %s after breach %s of trigger %s.",
            plan.id,
            plan.from_version,
            plan.to_version,
            breach.event_id,
            breach.trigger,
        )
        return messages

    async def _store_automatic_plan(
        self, session: AsyncSession, breach: BreachDetected, decision: StartPlan, now: datetime
    ) -> tuple[Plan, list[OutboxMessage]]:
        """Store the plan, the bad mark, the cooldown and the outbox rows of ``decision``."""
        plan = _automatic_plan(breach, decision, now)
        await repository.add_plan(session, plan)

        await repository.mark_bad(
            session,
            plan.environment,
            plan.service,
            decision.from_version,
            plan_id=plan.id,
            reason=f"automatic rollback after a breach of trigger {breach.trigger}",
            now=now,
        )
        await repository.set_cooldown(
            session,
            plan.environment,
            plan.service,
            breach.trigger,
            until=now + self._cooldown(breach),
            now=now,
            cause="plan",
            plan_id=plan.id,
        )

        source = str(breach.event_id)
        plan_subject = subject("rollback.plan", plan.environment, plan.service)
        command = events.execute_plan(plan, SYSTEM_ACTOR, now)
        messages = await repository.add_outbox_messages(
            session, source, [(plan_subject, command.plan), (EXECUTE_SUBJECT, command)], now
        )
        return plan, messages

    async def _suppress(
        self, session: AsyncSession, breach: BreachDetected, decision: Suppress, now: datetime
    ) -> OutboxMessage:
        """Store the suppression of ``decision``; return its BreachSuppressed outbox row."""
        event = events.breach_suppressed(
            breach,
            decision.reason,
            decision.detail,
            needs_manual_action=decision.needs_manual_action,
            plan_id=decision.plan_id,
            now=now,
        )
        await repository.add_suppression(
            session,
            Suppression(
                event_id=str(event.event_id),
                breach_event_id=str(breach.event_id),
                environment=breach.environment,
                service=breach.service,
                trigger=breach.trigger,
                reason=decision.reason,
                detail=event.detail,
                plan_id=decision.plan_id,
                needs_manual_action=decision.needs_manual_action,
                created_at=now,
                breach_json=breach.model_dump_json() if decision.recheck_at else None,
                version=decision.version,
                recheck_at=decision.recheck_at,
            ),
        )
        if decision.sets_cooldown:
            await repository.set_cooldown(
                session,
                breach.environment,
                breach.service,
                breach.trigger,
                until=now + self._cooldown(breach),
                now=now,
                cause=decision.reason,
                plan_id=None,
            )
        suppressed_subject = subject("rollback.suppressed", breach.environment, breach.service)
        message = await repository.add_outbox(
            session, str(breach.event_id), suppressed_subject, event, now
        )
        BREACH_DECISIONS.labels(decision=decision.reason).inc()
        logger.info(
            "Suppressed breach %s of trigger %s as %s: %s.",
            breach.event_id,
            breach.trigger,
            decision.reason,
            decision.detail,
        )
        return message

    def _ignore_stale(self, breach: BreachDetected, decision: IgnoreStale) -> None:
        BREACH_DECISIONS.labels(decision="stale").inc()
        logger.info(
            "Ignored stale breach %s of trigger %s: %s.",
            breach.event_id,
            breach.trigger,
            decision.detail,
        )

    def _cooldown(self, breach: BreachDetected) -> timedelta:
        return cooldown_for(self.settings, breach.environment, breach.service, breach.trigger)

    async def warm_up(self) -> None:
        """Store a breach's plan once in a transaction that is rolled back.

        SQLAlchemy compiles each statement at its first use on an engine, so without this the
        first breach after a start took several times as long to decide as the ones after it.
        """
        breach = BreachDetected(
            environment=WARM_UP_NAME,
            service=WARM_UP_NAME,
            version="v2",
            trigger="error_rate",
            measured=1.0,
            threshold=0.5,
            window_seconds=60,
            samples=1,
        )
        now = self.clock()
        try:
            async with self.db.sessions() as session:
                transaction = await session.begin()
                await repository.claim_inbox_entry(session, breach.event_id, WARM_UP_NAME, now)
                await repository.load_breach_context(
                    session, breach.environment, breach.service, breach.trigger, now
                )
                decision = StartPlan(from_version="v2", to_version="v1")
                _plan, messages = await self._store_automatic_plan(session, breach, decision, now)
                await repository.mark_published(session, [m.id for m in messages], now)
                await transaction.rollback()
        except Exception:  # noqa: BLE001 - only the first breach is slower without it.
            logger.warning(
                "Warming up the breach path failed, so the first breach will take longer.",
                exc_info=True,
            )

    # Breaches deferred by a cooldown.

    async def recheck_deferred(self) -> int:
        """Re-check the deferred breaches whose cooldown has ended; return how many were settled.

        A breach is settled when it is decided again or dropped. One whose service has an
        active plan stays deferred until a later call finds the plan finished. The events of
        new decisions are published here, and the outbox relay retries a failed publish.
        """
        now = self.clock()
        async with self.db.sessions() as session:
            due = await repository.due_deferred(session, now)
        settled = 0
        for suppression_id in due:
            source_id = await self._recheck_with_retries(suppression_id)
            if source_id is not None:
                settled += 1
                await self.publish_outbox(source_id=source_id)
        return settled

    async def _recheck_with_retries(self, suppression_id: str) -> str | None:
        for attempt in range(1, BREACH_ATTEMPTS + 1):
            try:
                return await self._recheck_one(suppression_id)
            except IntegrityError:
                if attempt == BREACH_ATTEMPTS:
                    raise
                # Another replica stored a plan or re-checked this breach first, so the next
                # attempt reads that state.
                logger.info(
                    "Lost a race on the re-check of suppression %s; checking again.",
                    suppression_id,
                )
        return None

    async def _recheck_one(self, suppression_id: str) -> str | None:
        """Re-check one deferred breach; return the outbox source id once it is settled."""
        now = self.clock()
        async with self.db.sessions() as session, session.begin():
            await repository.lock_for_write(session)
            row = await repository.lock_deferred(session, suppression_id)
            if row is None or row.breach_json is None:
                return None
            try:
                original = BreachDetected.model_validate_json(row.breach_json)
            except ValidationError as exc:
                # A stored breach that no longer validates would fail every re-check.
                row.rechecked_at = now
                row.recheck_outcome = "invalid"
                DEFERRED_RECHECKS.labels(result="invalid").inc()
                logger.warning(
                    "Dropped deferred suppression %s: its stored breach is invalid (%s).",
                    suppression_id,
                    exc,
                )
                return suppression_id
            context = await repository.load_breach_context(
                session, row.environment, row.service, row.trigger, now
            )
            action = recheck(row.version, context, now=now)
            if isinstance(action, WaitForPlan):
                return None
            if isinstance(action, Postpone):
                row.recheck_at = action.until
                logger.info(
                    "Postponed deferred breach %s to %s, the new end of its cooldown.",
                    original.event_id,
                    action.until.isoformat(),
                )
                return None

            row.rechecked_at = now
            if isinstance(action, DropDeferred):
                row.recheck_outcome = "dropped"
                DEFERRED_RECHECKS.labels(result="dropped").inc()
                logger.info(
                    "Dropped deferred breach %s of trigger %s: %s.",
                    original.event_id,
                    original.trigger,
                    action.detail,
                )
                return str(original.event_id)
            breach = derived_breach(original, row.version, now)
            breach_subject = subject("rollback.breach", breach.environment, breach.service)
            row.recheck_outcome = await self._decide_new_breach(
                session, breach, breach_subject, now
            )
            DEFERRED_RECHECKS.labels(result="redecided").inc()
            logger.info(
                "Decided deferred breach %s of %s again as breach %s: %s.",
                original.event_id,
                describe_version(row.version),
                breach.event_id,
                row.recheck_outcome,
            )
            return str(breach.event_id)

    # Deployments and outcomes.

    async def record_deployment(
        self, record: DeploymentRecorded, source_subject: str, *, publish: bool = False
    ) -> bool:
        """Store a deployment record once; return whether it was new.

        Raises DeploymentRejected when the record's time is too far ahead of the clock.

        With ``publish`` the record also goes on ``source_subject`` for other consumers; this
        planner's own consumer then finds its id in the inbox and skips it.
        """
        now = self.clock()
        if record.deployed_at > now + MAX_DEPLOYMENT_CLOCK_SKEW:
            raise DeploymentRejected(
                "deployedAt",
                record.deployed_at.isoformat(),
                f"the time is more than {MAX_DEPLOYMENT_CLOCK_SKEW.total_seconds():.0f} s ahead "
                "of the planner's clock: check the sender's clock, or leave deployedAt out",
            )
        async with self.db.sessions() as session, session.begin():
            await repository.lock_for_write(session)
            if await repository.is_handled(session, record.event_id):
                return False
            await repository.add_inbox_entry(session, record.event_id, source_subject, now)
            await repository.add_deployment(session, record, now)
            if publish:
                source = str(record.event_id)
                await repository.add_outbox(session, source, source_subject, record, now)
        logger.info(
            "Recorded deployment of %s %s in %s: %s.",
            record.service,
            record.version,
            record.environment,
            record.status,
        )
        if publish:
            await self.publish_outbox(source_id=str(record.event_id))
        return True

    async def apply_outcome(self, outcome: PlanFinished, source_subject: str) -> None:
        """Move a plan to its final status; a completed rollback makes its target current."""
        now = self.clock()
        plan_id = str(outcome.plan_id)
        with bind(plan_id=plan_id, environment=outcome.environment, service=outcome.service):
            async with self.db.sessions() as session, session.begin():
                await repository.lock_for_write(session)
                if await repository.is_handled(session, outcome.event_id):
                    return
                await repository.add_inbox_entry(session, outcome.event_id, source_subject, now)
                plan = await session.get(Plan, plan_id)
                if plan is None:
                    UNKNOWN_OUTCOMES.inc()
                    logger.warning(
                        "Ignored the %s outcome of unknown plan %s.", outcome.outcome, plan_id
                    )
                    return
                if plan.status in FINAL_STATUSES:
                    logger.info(
                        "Plan %s is already %s; ignored outcome %s.",
                        plan_id,
                        plan.status,
                        outcome.outcome,
                    )
                    return
                self._finish(plan, outcome)
                if outcome.outcome == "completed":
                    await self._record_rollback_deployment(session, plan, outcome, now)
                    if plan.trigger_type == "manual":
                        await self._mark_manual_rollback_bad(session, plan, now)
            logger.info("Plan %s finished: %s.", plan_id, outcome.outcome)

    @staticmethod
    def _finish(plan: Plan, outcome: PlanFinished) -> None:
        plan.status = outcome.outcome
        plan.started_at = plan.started_at or outcome.started_at
        plan.finished_at = outcome.finished_at
        plan.failed_step = outcome.failed_step
        plan.error = outcome.error

    @staticmethod
    async def _mark_manual_rollback_bad(session: AsyncSession, plan: Plan, now: datetime) -> None:
        """Mark the version a completed manual rollback replaced, so no automatic one returns.

        An operator can still choose that version as a manual target with force and a reason.
        """
        if plan.from_version is None:
            return
        marked = await repository.mark_bad(
            session,
            plan.environment,
            plan.service,
            plan.from_version,
            plan_id=plan.id,
            reason=f"manual rollback by {plan.actor}",
            now=now,
        )
        if marked:
            logger.info(
                "Marked %s bad because manual plan %s of %s rolled it back.",
                plan.from_version,
                plan.id,
                plan.actor,
            )

    async def _record_rollback_deployment(
        self, session: AsyncSession, plan: Plan, outcome: PlanFinished, now: datetime
    ) -> None:
        record = DeploymentRecorded(
            event_id=events.derived_id(plan.id, "rollback-deployment"),
            environment=plan.environment,
            service=plan.service,
            version=plan.to_version,
            status="succeeded",
            actor=f"rollback {plan.id}",
            deployed_at=outcome.finished_at,
        )
        await repository.add_deployment(session, record, now)

    # Operators' requests.

    async def create_manual_plan(self, request: ManualRollback, actor: str) -> Plan:
        """Store a pending manual plan after checking its target; publish PlanCreated."""
        now = self.clock()
        async with self.db.sessions() as session, session.begin():
            await repository.lock_for_write(session)
            current = await self._manual_current(session, request)
            history = await repository.load_history(session, request.environment, request.service)
            bad = await repository.bad_versions(session, request.environment, request.service)
            check_manual_target(
                history,
                current,
                request.target_version,
                bad,
                force=request.force,
                reason=request.reason,
            )
            await self._reject_active(session, request.environment, request.service)
            plan = Plan(
                id=str(uuid4()),
                environment=request.environment,
                service=request.service,
                from_version=current,
                to_version=request.target_version,
                status="pending",
                trigger="manual",
                trigger_type="manual",
                actor=actor,
                reason=request.reason,
                forced=request.force and request.target_version in bad,
                created_at=now,
            )
            session.add(plan)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise PlanConflict(
                    f"another plan for {request.service} in {request.environment} was stored at "
                    "the same moment: cancel it or wait for it to finish"
                ) from exc
            plan_subject = subject("rollback.plan", plan.environment, plan.service)
            await repository.add_outbox(
                session, plan.id, plan_subject, events.plan_created(plan), now
            )
        with bind(plan_id=plan.id, environment=plan.environment, service=plan.service):
            logger.info(
                "Created manual plan %s from %s to %s for %s.",
                plan.id,
                current,
                plan.to_version,
                actor,
            )
        await self.publish_outbox(source_id=plan.id)
        return plan

    async def _manual_current(self, session: AsyncSession, request: ManualRollback) -> str | None:
        row = await repository.current_version(session, request.environment, request.service)
        if row is None:
            return request.from_version
        if request.from_version is not None and request.from_version != row.version:
            raise RollbackRejected(
                "fromVersion",
                request.from_version,
                f"the current version is {row.version}: pass that, or leave fromVersion out",
                status_code=409,
            )
        return row.version

    @staticmethod
    async def _reject_active(session: AsyncSession, environment: str, service: str) -> None:
        active = await repository.active_plan(session, environment, service)
        if active is not None:
            raise PlanConflict(
                f"plan {active.id} for {service} in {environment} is already {active.status}: "
                f"cancel it with 'travi rollback cancel {active.id}' or wait for it to finish"
            )

    async def execute_plan(self, plan_id: UUID, actor: str) -> Plan:
        """Send the execute command of a pending plan and mark it in progress."""
        now = self.clock()
        async with self.db.sessions() as session, session.begin():
            await repository.lock_for_write(session)
            plan = await self._get_plan(session, plan_id)
            if plan.status != "pending":
                raise PlanConflict(
                    f"plan {plan.id} is {plan.status}: only a pending plan can be executed"
                )
            if plan.cancel_requested_at is not None:
                # The cancel command went out first, so the executor ignores a later execute.
                raise PlanConflict(
                    f"plan {plan.id} has a cancel request from {plan.cancel_requested_by}, so it "
                    "will end cancelled: create a new plan with 'travi rollback create'"
                )
            plan.status = "in_progress"
            plan.started_at = now
            await session.flush()
            command = events.execute_plan(plan, actor, now)
            await repository.add_outbox(session, plan.id, EXECUTE_SUBJECT, command, now)
        with bind(plan_id=plan.id, environment=plan.environment, service=plan.service):
            logger.info("Sent the execute command of plan %s for %s.", plan.id, actor)
        await self.publish_outbox(source_id=plan.id)
        return plan

    async def cancel_plan(self, plan_id: UUID, actor: str, reason: str = "") -> Plan:
        """Send the cancel command of an active plan; its outcome event finalises the status."""
        now = self.clock()
        async with self.db.sessions() as session, session.begin():
            await repository.lock_for_write(session)
            plan = await self._get_plan(session, plan_id)
            if plan.status not in ACTIVE_STATUSES:
                raise PlanConflict(f"plan {plan.id} is already {plan.status}: nothing to cancel")
            if plan.cancel_requested_at is None:
                plan.cancel_requested_at = now
                plan.cancel_requested_by = actor
                await session.flush()
                command = events.cancel_plan(plan, actor, reason, now)
                await repository.add_outbox(session, plan.id, CANCEL_SUBJECT, command, now)
        with bind(plan_id=plan.id, environment=plan.environment, service=plan.service):
            logger.info("Sent the cancel command of plan %s for %s.", plan.id, actor)
        await self.publish_outbox(source_id=plan.id)
        return plan

    async def get_plan(self, plan_id: UUID) -> Plan:
        """Return a stored plan or raise PlanNotFound."""
        async with self.db.sessions() as session:
            return await self._get_plan(session, plan_id)

    @staticmethod
    async def _get_plan(session: AsyncSession, plan_id: UUID) -> Plan:
        plan = await session.get(Plan, str(plan_id))
        if plan is None:
            raise PlanNotFound(str(plan_id))
        return plan

    # The outbox.

    async def publish_outbox(
        self,
        *,
        source_id: str | None = None,
        created_before: datetime | None = None,
        strict: bool = False,
    ) -> int:
        """Publish stored events not yet published, oldest first; return how many went out.

        With ``strict`` a failed publish raises, so a bus consumer has its message delivered
        again. Otherwise the failure is logged and the relay retries later.
        """
        async with self.db.sessions() as session:
            messages = await repository.unpublished(
                session, source_id=source_id, created_before=created_before
            )
        return await self._publish_messages(messages, strict=strict)

    async def _publish_messages(
        self, messages: Sequence[OutboxMessage], *, strict: bool = False
    ) -> int:
        """Publish committed outbox rows in order and mark those that went out as published."""
        published: list[int] = []
        try:
            for message in messages:
                event = OUTBOX_MODELS[message.kind].model_validate_json(message.payload)
                await self._publish(message.subject, event)
                published.append(message.id)
        except Exception:
            OUTBOX_FAILURES.inc()
            if strict:
                raise
            logger.warning(
                "Publishing outbox events failed; %d wait for the relay.",
                len(messages) - len(published),
                exc_info=True,
            )
        finally:
            if published:
                await self._mark_published(published)
        return len(published)

    async def _mark_published(self, outbox_ids: list[int]) -> None:
        now = self.clock()
        async with self.db.sessions() as session, session.begin():
            await repository.mark_published(session, outbox_ids, now)


def _automatic_plan(breach: BreachDetected, decision: StartPlan, now: datetime) -> Plan:
    """Build the plan row of a breach; its id derives from the breach, so a repeat collides."""
    return Plan(
        id=str(events.derived_id(breach.event_id, "plan")),
        environment=breach.environment,
        service=breach.service,
        from_version=decision.from_version,
        to_version=decision.to_version,
        # The execute command goes into the same outbox, so the plan is in progress as soon
        # as it is stored.
        status="in_progress",
        trigger=breach.trigger,
        trigger_type="automatic",
        actor=SYSTEM_ACTOR,
        reason=f"{breach.trigger} {breach.measured:g} breached threshold {breach.threshold:g}",
        forced=False,
        breach_json=breach.model_dump_json(),
        created_at=now,
        started_at=now,
    )
