"""The executor's database adapter: claims, takeovers, step states, cancels and watches.

Every write a runner makes is fenced on the lease it holds (``WHERE lease = :lease``), so an
executor whose plan was taken over raises :class:`LeaseLost` at its next write and stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.executor.errors import LeaseLost, PlanCancelled
from services.executor.models import PlanRow, StepRow
from shared.contracts import STEP_NAMES, PlanCreated, StepName
from shared.db import Database

# A heartbeat this old is stale for any setting; written when an executor hands a plan back.
RELEASED_HEARTBEAT = datetime(1970, 1, 1, tzinfo=UTC)

ClaimResult = Literal["claimed", "in_progress", "completed", "failed", "cancelled"]
CancelResult = Literal["tombstoned", "requested", "finished"]


@dataclass
class StepState:
    """The stored state of one step."""

    name: StepName
    status: str = "pending"
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    error: str | None = None


@dataclass
class PlanState:
    """A snapshot of a plan row and its steps, as a runner starts from it."""

    plan: PlanCreated
    actor: str
    status: str
    lease: int
    takeovers: int
    trace_context: dict[str, str]
    started_at: datetime | None
    traffic_paused: bool
    switch_started: bool
    cancel_actor: str | None
    cancel_reason: str | None
    cancel_requested: bool
    outcome: str | None
    failed_step: str | None
    error: str | None
    finished_at: datetime | None
    outcome_published: bool
    steps: dict[StepName, StepState] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelRequest:
    """The actor and reason of a recorded cancel."""

    actor: str
    reason: str


def _plan_values(plan: PlanCreated, **values: object) -> dict[str, object]:
    """Return the column values of a new plan row; columns not given are stored as NULL.

    Every column is named, so each insert has the same parameters and one compiled form.
    """
    every_column = dict.fromkeys(column.key for column in PlanRow.__table__.columns)
    return every_column | {
        "plan_id": str(plan.plan_id),
        "environment": plan.environment,
        "service": plan.service,
        "from_version": plan.from_version,
        "to_version": plan.to_version,
        "plan_json": plan.model_dump_json(),
        "lease": 1,
        "takeovers": 0,
        "traffic_paused": False,
        "outcome_published": False,
        **values,
    }


def claimed_state(
    plan: PlanCreated, *, actor: str, trace_context: dict[str, str], now: datetime
) -> PlanState:
    """Build the state that a successful :meth:`ExecutorRepository.claim` with the same
    arguments stored, so the runner starts without reading the rows back."""
    return PlanState(
        plan=plan,
        actor=actor,
        status="in_progress",
        lease=1,
        takeovers=0,
        trace_context=dict(trace_context),
        started_at=now,
        traffic_paused=False,
        switch_started=False,
        cancel_actor=None,
        cancel_reason=None,
        cancel_requested=False,
        outcome=None,
        failed_step=None,
        error=None,
        finished_at=None,
        outcome_published=False,
        steps={name: StepState(name=name) for name in STEP_NAMES},
    )


def _claimed_row(
    plan: PlanCreated, actor: str, owner: str, trace_context: dict[str, str], now: datetime
) -> dict[str, object]:
    return _plan_values(
        plan,
        status="in_progress",
        actor=actor,
        owner=owner,
        heartbeat_at=now,
        trace_context=json.dumps(trace_context),
        created_at=now,
        started_at=now,
    )


def _running_step(plan_id: str, step: StepName, attempt: int, now: datetime) -> dict[str, object]:
    return {
        "step_plan_id": plan_id,
        "step_name": step,
        "status": "running",
        "attempt": attempt,
        "started_at": now,
        "finished_at": None,
        "duration_ms": None,
        "error": None,
    }


def _step_values(plan_id: str, status: str) -> list[dict[str, object]]:
    return [
        {"plan_id": plan_id, "name": name, "position": index, "status": status, "attempt": 0}
        for index, name in enumerate(STEP_NAMES)
    ]


# The statements a runner repeats, built once: a statement built on every call costs more
# Python time than SQLite takes to run it. An UPDATE without values sets the columns named by
# the parameters other than its own bind parameters.
INSERT_PLAN = insert(PlanRow.__table__)
INSERT_STEPS = insert(StepRow.__table__)
FENCE_PLAN = update(PlanRow.__table__).where(
    PlanRow.plan_id == bindparam("fence_plan_id"),
    PlanRow.lease == bindparam("fence_lease"),
    PlanRow.status == "in_progress",
)
FENCE_PLAN_READING_CANCEL = FENCE_PLAN.returning(
    PlanRow.cancel_requested_at, PlanRow.cancel_actor, PlanRow.cancel_reason
)
UPDATE_STEP = update(StepRow.__table__).where(
    StepRow.plan_id == bindparam("step_plan_id"), StepRow.name == bindparam("step_name")
)


class ExecutorRepository:
    """Reads and writes the executor's tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(
        self,
        plan: PlanCreated,
        *,
        actor: str,
        owner: str,
        trace_context: dict[str, str],
        now: datetime,
    ) -> ClaimResult:
        """Insert the plan as in progress and owned by ``owner``, unless a row exists already.

        The primary key makes this atomic across replicas: exactly one insert succeeds.
        """
        row = _claimed_row(plan, actor, owner, trace_context, now)
        if not await self._insert_plan(row, "pending"):
            return await self._status(str(plan.plan_id))
        return "claimed"

    async def _insert_plan(self, row: dict[str, object], step_status: str) -> bool:
        """Insert a plan row and its steps; return False when the plan has a row already."""
        try:
            async with self.db.engine.begin() as connection:
                await connection.execute(INSERT_PLAN, row)
                await connection.execute(
                    INSERT_STEPS, _step_values(str(row["plan_id"]), step_status)
                )
        except IntegrityError:
            return False
        return True

    async def warm_up(self, plan: PlanCreated, owner: str, now: datetime) -> None:
        """Claim ``plan`` and start its first step in a transaction that is rolled back.

        SQLAlchemy compiles each statement at its first use on an engine. This moves that cost
        from the first plan after a start to the start.
        """
        plan_id = str(plan.plan_id)
        async with self.db.engine.connect() as connection:
            transaction = await connection.begin()
            await connection.execute(INSERT_PLAN, _claimed_row(plan, "system", owner, {}, now))
            await connection.execute(INSERT_STEPS, _step_values(plan_id, "pending"))
            await self._fence_and_read_cancel(connection, plan_id, 1, heartbeat_at=now)
            await connection.execute(
                UPDATE_STEP, _running_step(plan_id, STEP_NAMES[0], 1, now)
            )
            await transaction.rollback()

    async def _status(self, plan_id: str) -> ClaimResult:
        async with self.db.sessions() as session:
            status = await session.scalar(select(PlanRow.status).where(PlanRow.plan_id == plan_id))
        if status is None:
            # The row that made the insert fail was deleted in between; treat it as handled.
            return "cancelled"
        return status  # type: ignore[return-value]

    async def record_cancel(
        self, plan: PlanCreated, *, actor: str, reason: str, now: datetime
    ) -> CancelResult:
        """Record a cancel: a tombstone for a plan never started, a request for a running one."""
        plan_id = str(plan.plan_id)
        tombstone = _plan_values(
            plan,
            status="cancelled",
            actor=actor,
            trace_context="{}",
            created_at=now,
            finished_at=now,
            cancel_requested_at=now,
            cancel_actor=actor,
            cancel_reason=reason,
            outcome="cancelled",
            # Worded as for a plan cancelled while it runs, so the reason reaches the outcome.
            error=str(PlanCancelled(actor, reason)),
        )
        if await self._insert_plan(tombstone, "skipped"):
            return "tombstoned"

        async with self.db.engine.begin() as connection:
            result = await connection.execute(
                update(PlanRow)
                .where(
                    PlanRow.plan_id == plan_id,
                    PlanRow.status == "in_progress",
                    PlanRow.cancel_requested_at.is_(None),
                )
                .values(cancel_requested_at=now, cancel_actor=actor, cancel_reason=reason)
            )
            if result.rowcount:
                return "requested"
            status = await connection.scalar(
                select(PlanRow.status).where(PlanRow.plan_id == plan_id)
            )
        return "requested" if status == "in_progress" else "finished"

    async def load(self, plan_id: str) -> PlanState | None:
        """Return the stored plan and its steps, or None when there is no row."""
        async with self.db.sessions() as session:
            row = await session.get(PlanRow, plan_id)
            if row is None:
                return None
            steps = (
                await session.scalars(
                    select(StepRow).where(StepRow.plan_id == plan_id).order_by(StepRow.position)
                )
            ).all()
        return PlanState(
            plan=PlanCreated.model_validate_json(row.plan_json),
            actor=row.actor,
            status=row.status,
            lease=row.lease,
            takeovers=row.takeovers,
            trace_context=json.loads(row.trace_context or "{}"),
            started_at=row.started_at,
            traffic_paused=row.traffic_paused,
            switch_started=row.switch_started_at is not None,
            cancel_actor=row.cancel_actor,
            cancel_reason=row.cancel_reason,
            cancel_requested=row.cancel_requested_at is not None,
            outcome=row.outcome,
            failed_step=row.failed_step,
            error=row.error,
            finished_at=row.finished_at,
            outcome_published=row.outcome_published,
            steps={
                step.name: StepState(  # type: ignore[misc]
                    name=step.name,  # type: ignore[arg-type]
                    status=step.status,
                    attempt=step.attempt,
                    started_at=step.started_at,
                    finished_at=step.finished_at,
                    duration_ms=step.duration_ms,
                    error=step.error,
                )
                for step in steps
            },
        )

    async def _fence(
        self, connection: AsyncConnection, plan_id: str, lease: int, **values: object
    ) -> None:
        result = await connection.execute(
            FENCE_PLAN, {"fence_plan_id": plan_id, "fence_lease": lease, **values}
        )
        if result.rowcount != 1:
            raise LeaseLost(plan_id, lease)

    async def _fence_and_read_cancel(
        self, connection: AsyncConnection, plan_id: str, lease: int, **values: object
    ) -> CancelRequest | None:
        """Fence like :meth:`_fence` and return the recorded cancel, in one statement."""
        row = (
            await connection.execute(
                FENCE_PLAN_READING_CANCEL,
                {"fence_plan_id": plan_id, "fence_lease": lease, **values},
            )
        ).one_or_none()
        if row is None:
            raise LeaseLost(plan_id, lease)
        if row.cancel_requested_at is None:
            return None
        return CancelRequest(row.cancel_actor or "unknown", row.cancel_reason or "")

    async def heartbeat(self, plan_id: str, lease: int, now: datetime) -> CancelRequest | None:
        """Refresh the heartbeat and return the recorded cancel, if any."""
        async with self.db.engine.begin() as connection:
            return await self._fence_and_read_cancel(connection, plan_id, lease, heartbeat_at=now)

    async def step_started(
        self,
        plan_id: str,
        lease: int,
        step: StepName,
        attempt: int,
        now: datetime,
        *,
        unless_cancelled: bool = False,
    ) -> CancelRequest | None:
        """Store that ``step`` is running its ``attempt``; pausing traffic marks it paused first.

        With ``unless_cancelled``, a recorded cancel is returned instead and the step is left
        as it was, in the same transaction.
        """
        plan_values: dict[str, object] = {"heartbeat_at": now}
        async with self.db.engine.begin() as connection:
            if unless_cancelled:
                request = await self._fence_and_read_cancel(
                    connection, plan_id, lease, **plan_values
                )
                if request is not None:
                    return request
            else:
                await self._fence(connection, plan_id, lease, **plan_values)
            if step == "pause_traffic":
                await self._fence(connection, plan_id, lease, traffic_paused=True)
            await connection.execute(UPDATE_STEP, _running_step(plan_id, step, attempt, now))
        return None

    async def switch_started(self, plan_id: str, lease: int, now: datetime) -> None:
        """Store that the driver's switch is about to be called (read again at a takeover)."""
        async with self.db.engine.begin() as connection:
            await self._fence(connection, plan_id, lease, switch_started_at=now, heartbeat_at=now)

    async def step_finished(
        self,
        plan_id: str,
        lease: int,
        step: StepName,
        *,
        status: str,
        now: datetime,
        duration_ms: float | None,
        error: str | None,
    ) -> None:
        """Store the end of a step's attempt: succeeded, failed or skipped."""
        plan_values: dict[str, object] = {"heartbeat_at": now}
        if step == "resume_traffic" and status == "succeeded":
            plan_values["traffic_paused"] = False
        async with self.db.engine.begin() as connection:
            await self._fence(connection, plan_id, lease, **plan_values)
            await connection.execute(
                UPDATE_STEP,
                {
                    "step_plan_id": plan_id,
                    "step_name": step,
                    "status": status,
                    "finished_at": now,
                    "duration_ms": duration_ms,
                    "error": error,
                },
            )

    async def skip_steps(
        self, plan_id: str, lease: int, steps: list[StepName], now: datetime, reason: str
    ) -> None:
        """Mark steps that will not run as skipped, with the reason."""
        if not steps:
            return
        async with self.db.engine.begin() as connection:
            await self._fence(connection, plan_id, lease, heartbeat_at=now)
            await connection.execute(
                update(StepRow)
                .where(StepRow.plan_id == plan_id, StepRow.name.in_(steps))
                .values(status="skipped", finished_at=now, error=reason)
            )

    async def record_outcome(
        self,
        plan_id: str,
        lease: int,
        *,
        outcome: str,
        failed_step: str | None,
        error: str | None,
        now: datetime,
    ) -> None:
        """Store the plan's outcome before it is published, so a takeover publishes the same."""
        async with self.db.engine.begin() as connection:
            await self._fence(
                connection,
                plan_id,
                lease,
                outcome=outcome,
                failed_step=failed_step,
                error=error,
                finished_at=now,
                heartbeat_at=now,
            )

    async def record_compensation(
        self, plan_id: str, lease: int, *, error: str | None, now: datetime
    ) -> None:
        """Store the outcome's error and finish time again after the compensating resume."""
        async with self.db.engine.begin() as connection:
            await self._fence(
                connection, plan_id, lease, error=error, finished_at=now, heartbeat_at=now
            )

    async def finish(
        self,
        plan_id: str,
        lease: int,
        *,
        outcome: str,
        watch_until: datetime | None,
        published: bool,
    ) -> None:
        """Close the plan: its status becomes its outcome.

        ``published`` is False when the notify step could not send the outcome, so the sweeper
        publishes it later.
        """
        async with self.db.engine.begin() as connection:
            await self._fence(
                connection,
                plan_id,
                lease,
                status=outcome,
                outcome_published=published,
                watch_until=watch_until,
            )

    async def release(self, plan_id: str, lease: int) -> None:
        """Hand a plan back at shutdown so that the next sweep of any executor takes it over."""
        async with self.db.engine.begin() as connection:
            await self._fence(connection, plan_id, lease, heartbeat_at=RELEASED_HEARTBEAT)

    async def stale_plans(self, cutoff: datetime, limit: int = 50) -> list[tuple[str, int]]:
        """Return (plan id, lease) of plans in progress whose heartbeat is older than ``cutoff``."""
        async with self.db.engine.connect() as connection:
            rows = await connection.execute(
                select(PlanRow.plan_id, PlanRow.lease)
                .where(PlanRow.status == "in_progress", PlanRow.heartbeat_at < cutoff)
                .order_by(PlanRow.heartbeat_at)
                .limit(limit)
            )
            return [(row.plan_id, row.lease) for row in rows]

    async def take_over(
        self, plan_id: str, lease: int, *, owner: str, now: datetime, cutoff: datetime
    ) -> bool:
        """Take a stale plan over; exactly one of several executors racing for it wins."""
        async with self.db.engine.begin() as connection:
            result = await connection.execute(
                update(PlanRow)
                .where(
                    PlanRow.plan_id == plan_id,
                    PlanRow.lease == lease,
                    PlanRow.status == "in_progress",
                    PlanRow.heartbeat_at < cutoff,
                )
                .values(
                    owner=owner,
                    lease=PlanRow.lease + 1,
                    takeovers=PlanRow.takeovers + 1,
                    heartbeat_at=now,
                )
            )
        return result.rowcount == 1

    async def unpublished_outcomes(self, cutoff: datetime, limit: int = 50) -> list[str]:
        """Return finished plans (cancel tombstones) whose outcome was not yet published."""
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(PlanRow.plan_id)
                .where(
                    PlanRow.status != "in_progress",
                    PlanRow.outcome_published.is_(False),
                    PlanRow.finished_at < cutoff,
                )
                .limit(limit)
            )
            return list(rows)

    async def mark_published(self, plan_id: str) -> None:
        """Record that a finished plan's outcome is on the bus."""
        async with self.db.engine.begin() as connection:
            await connection.execute(
                update(PlanRow).where(PlanRow.plan_id == plan_id).values(outcome_published=True)
            )

    async def watched_plans(
        self, environment: str, service: str, version: str | None, at: datetime
    ) -> list[PlanState]:
        """Return completed plans of the service whose watch period covers ``at``."""
        query = select(PlanRow.plan_id).where(
            PlanRow.environment == environment,
            PlanRow.service == service,
            PlanRow.status == "completed",
            PlanRow.watch_until >= at,
            PlanRow.finished_at <= at,
            PlanRow.escalated_at.is_(None),
        )
        if version is not None:
            query = query.where(PlanRow.to_version == version)
        async with self.db.sessions() as session:
            plan_ids = list(await session.scalars(query))
        states = [await self.load(plan_id) for plan_id in plan_ids]
        return [state for state in states if state is not None]

    async def mark_escalated(self, plan_id: str, now: datetime) -> None:
        """Record that the plan's watch period raised an escalation."""
        async with self.db.engine.begin() as connection:
            await connection.execute(
                update(PlanRow)
                .where(PlanRow.plan_id == plan_id, PlanRow.escalated_at.is_(None))
                .values(escalated_at=now)
            )
