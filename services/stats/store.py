"""The stats service's database adapter: apply events to the read model, and query it.

Nothing here commits: the caller owns the transaction, so an event's changes (inbox row, plan,
steps and counts) are committed together before the message is acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, case, delete, func, or_, select, union_all
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import (
    BreachDetected,
    BreachSuppressed,
    CancelPlan,
    EscalationRaised,
    ExecutePlan,
    IncidentReportStored,
    NotificationFailed,
    PlanCreated,
    PlanFinished,
    StepChanged,
)

from services.stats import projection
from services.stats.models import (
    COUNT_FIELDS,
    VIEW_TABLES,
    StatsDailyCount,
    StatsInbox,
    StatsPlan,
    StatsReport,
    StatsSignal,
    StatsStep,
    StatsTotalCount,
)
from services.stats.summary import Totals, plan_range, stats_document

logger = logging.getLogger(__name__)

PLAN_EVENTS = (PlanCreated, ExecutePlan, CancelPlan, StepChanged, PlanFinished)
RollbackEvent = (
    BreachDetected
    | PlanCreated
    | ExecutePlan
    | CancelPlan
    | StepChanged
    | PlanFinished
    | BreachSuppressed
    | EscalationRaised
    | IncidentReportStored
    | NotificationFailed
)


@dataclass(frozen=True)
class Fact:
    """Something an applied event showed, for the Prometheus metrics after the commit.

    ``kind`` is one of: breach, suppressed, escalation, notification_failed, finished,
    recovery, reversed_times. ``labels`` and ``value`` depend on the kind.
    """

    kind: str
    labels: tuple[str, ...] = ()
    value: float | None = None


async def apply_event(session: AsyncSession, subject: str, event: RollbackEvent) -> list[Fact] | None:
    """Apply one event to the read model; return its facts, or None when it was applied before."""
    return (await apply_events(session, [(subject, event)]))[0]


async def apply_events(
    session: AsyncSession, items: Sequence[tuple[str, RollbackEvent]]
) -> list[list[Fact] | None]:
    """Apply events in order; return each one's facts, or None for an event applied before.

    The batch claims all event ids in one statement, loads the plans and steps it touches in
    two more, and writes the summed count changes at the end. So a replay costs a few round
    trips per batch instead of several per event, and a single live event takes the same path.
    """
    claimed = await _claim_all(session, items)
    batch = _Batch(session)
    await batch.load_plans({_plan_id_of(event) for _, event in items if isinstance(event, PLAN_EVENTS)})
    results: list[list[Fact] | None] = []
    for _, event in items:
        event_id = str(event.event_id)
        if event_id not in claimed:
            results.append(None)
            continue
        claimed.discard(event_id)
        results.append(await batch.apply(event))
    await batch.write_counts()
    return results


async def _claim_all(session: AsyncSession, items: Sequence[tuple[str, RollbackEvent]]) -> set[str]:
    """Insert the inbox rows of new event ids; return the ids that were not there before."""
    now = datetime.now(UTC)
    rows = {}
    for subject, event in items:
        event_id = str(event.event_id)
        rows.setdefault(event_id, {"event_id": event_id, "subject": subject, "handled_at": now})
    result = await session.execute(_statement(session, "claim"), list(rows.values()))
    return set(result.scalars().all())


# Statements built once per dialect: building them per event tripled the Python calls of an
# apply, by cProfile.
_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(session: AsyncSession, name: str) -> Any:
    dialect = session.get_bind().dialect.name
    key = (dialect, name)
    if key not in _STATEMENTS:
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        if name == "claim":
            table = StatsInbox.__table__
            statement = (
                insert(table)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(table.c.event_id)
            )
        else:
            table = {"daily": StatsDailyCount, "total": StatsTotalCount}[name].__table__
            statement = insert(table)
            statement = statement.on_conflict_do_update(
                index_elements=[column.name for column in table.primary_key.columns],
                set_={field: table.c[field] + statement.excluded[field] for field in COUNT_FIELDS},
            )
        _STATEMENTS[key] = statement
    return _STATEMENTS[key]


class _Batch:
    """The plans and steps one batch of events touches, and its summed count changes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.plans: dict[str, StatsPlan] = {}
        self.steps: dict[tuple[str, str], StatsStep] = {}
        self.daily: dict[projection.DailyKey, dict[str, int]] = {}
        self.totals: dict[projection.TotalKey, dict[str, int]] = {}

    async def load_plans(self, plan_ids: set[str]) -> None:
        """Load and lock the stored plans among ``plan_ids`` and their steps."""
        if not plan_ids:
            return
        ids = sorted(plan_ids)
        plans = select(StatsPlan).where(StatsPlan.id.in_(ids)).order_by(StatsPlan.id).with_for_update()
        for plan in (await self.session.scalars(plans)).all():
            self.plans[plan.id] = plan
        steps = select(StatsStep).where(StatsStep.plan_id.in_(ids)).with_for_update()
        for step in (await self.session.scalars(steps)).all():
            self.steps[(step.plan_id, step.name)] = step

    async def apply(self, event: RollbackEvent) -> list[Fact]:
        """Apply one claimed event and return its facts."""
        if isinstance(event, BreachDetected):
            _add_signal(self.session, event, "breach", event.trigger, event.detail, None)
            return [Fact("breach", (event.trigger,))]
        if isinstance(event, BreachSuppressed):
            _add_signal(self.session, event, "suppressed", event.reason, event.detail, event.plan_id)
            return [Fact("suppressed", (event.reason,))]
        if isinstance(event, EscalationRaised):
            _add_signal(self.session, event, "escalation", event.reason, event.detail, event.plan_id)
            return [Fact("escalation")]
        if isinstance(event, NotificationFailed):
            _add_signal(
                self.session, event, "notification_failed", event.channel, event.error, event.plan_id
            )
            return [Fact("notification_failed", (event.channel,))]
        if isinstance(event, IncidentReportStored):
            await _store_report(self.session, event)
            return []
        return self.apply_to_plan(event)

    def apply_to_plan(
        self, event: PlanCreated | ExecutePlan | CancelPlan | StepChanged | PlanFinished
    ) -> list[Fact]:
        """Apply an event of one plan, creating the plan's row on its first event."""
        plan_id = _plan_id_of(event)
        plan = self.plans.get(plan_id)
        if plan is None:
            plan = projection.new_plan(plan_id, event.occurred_at)
            self.session.add(plan)
            self.plans[plan_id] = plan
            before = None
        else:
            before = projection.contribution(plan)
        projection.note_event(plan, event.occurred_at, *_scope_of(event))

        facts: list[Fact] = []
        if isinstance(event, PlanCreated):
            projection.apply_created(plan, event)
        elif isinstance(event, ExecutePlan | CancelPlan):
            projection.apply_command(plan, event)
        elif isinstance(event, StepChanged):
            step = self.steps.get((plan_id, event.step))
            merged = projection.apply_step(plan, step, event)
            if step is None:
                self.session.add(merged)
                self.steps[(plan_id, event.step)] = merged
        elif projection.apply_finished(plan, event):
            facts.extend(_finished_facts(plan))

        recovery = projection.recovery_seconds(plan)
        if recovery is not None and not plan.recovery_recorded:
            plan.recovery_recorded = True
            facts.append(Fact("recovery", (plan.trigger or "unknown",), recovery))

        after = projection.contribution(plan)
        plan.bucket_at = after.bucket_at if after is not None else None
        plan.counted_duration_ms = after.duration_ms if after is not None else None
        if before != after:
            self.add_changes(before, after)
        return facts

    def add_changes(
        self, before: projection.Contribution | None, after: projection.Contribution | None
    ) -> None:
        """Add the count changes of one plan's new contribution to the batch's sums."""
        daily, totals = projection.count_changes(before, after)
        for target, changes in ((self.daily, daily), (self.totals, totals)):
            for key, counts in changes.items():
                summed = target.setdefault(key, {})
                for name, value in counts.items():
                    summed[name] = summed.get(name, 0) + value

    async def write_counts(self) -> None:
        """Add the batch's count changes to the count tables, in key order.

        The key order means two transactions never lock the same count rows in opposite
        orders.
        """
        daily_names = ("day", "environment", "service", "trigger", "trigger_type")
        total_names = daily_names[1:]
        for table, names, changes in (
            ("daily", daily_names, self.daily),
            ("total", total_names, self.totals),
        ):
            rows = [
                {**dict(zip(names, key, strict=True)), **{name: counts.get(name, 0) for name in COUNT_FIELDS}}
                for key, counts in sorted(changes.items())
                if any(counts.values())
            ]
            if rows:
                await self.session.execute(_statement(self.session, table), rows)


def _add_signal(
    session: AsyncSession,
    event: BreachDetected | BreachSuppressed | EscalationRaised | NotificationFailed,
    kind: str,
    label: str,
    detail: str,
    plan_id: object,
) -> None:
    session.add(
        StatsSignal(
            event_id=str(event.event_id),
            kind=kind,
            environment=event.environment,
            service=event.service,
            plan_id=str(plan_id) if plan_id is not None else None,
            label=label[:200],
            detail=detail,
            occurred_at=event.occurred_at,
        )
    )


async def _store_report(session: AsyncSession, event: IncidentReportStored) -> None:
    report = await session.get(StatsReport, str(event.plan_id), with_for_update=True)
    if report is None:
        session.add(
            StatsReport(plan_id=str(event.plan_id), markdown=event.markdown, stored_at=event.occurred_at)
        )
    elif event.occurred_at >= report.stored_at:
        report.markdown = event.markdown
        report.stored_at = event.occurred_at


def _plan_id_of(event: PlanCreated | ExecutePlan | CancelPlan | StepChanged | PlanFinished) -> str:
    if isinstance(event, ExecutePlan | CancelPlan):
        return str(event.plan.plan_id)
    return str(event.plan_id)


def _scope_of(event: BaseModel) -> tuple[str, str]:
    source = event.plan if isinstance(event, ExecutePlan | CancelPlan) else event
    return source.environment, source.service


def _finished_facts(plan: StatsPlan) -> list[Fact]:
    labels = (plan.trigger or "unknown", plan.trigger_type or "unknown", plan.status)
    duration = projection.counted_duration_ms(plan)
    facts = [Fact("finished", labels, duration / 1000.0 if duration is not None else None)]
    if projection.has_reversed_times(plan):
        logger.warning(
            "Plan %s finished at %s before it started at %s; it is left out of the average "
            "duration.",
            plan.id,
            plan.finished_at.isoformat(),
            plan.started_at.isoformat(),
        )
        facts.append(Fact("reversed_times"))
    return facts


async def wipe(session: AsyncSession) -> None:
    """Delete every row of the read model, inbox included, ahead of a replay."""
    for table in VIEW_TABLES:
        await session.execute(delete(table))


# Queries.


@dataclass(frozen=True)
class StatsFilter:
    """Scope of a statistics query; a None field does not restrict it."""

    environment: str | None = None
    service: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _scoped(statement, table, scope: StatsFilter):  # noqa: ANN001, ANN202 - SQLAlchemy select
    if scope.environment is not None:
        statement = statement.where(table.environment == scope.environment)
    if scope.service is not None:
        statement = statement.where(table.service == scope.service)
    return statement


def _count_level(statement, table, scope: StatsFilter):  # noqa: ANN001, ANN202 - SQLAlchemy select
    """Restrict a count-table select to the rows of the scope's level (``*`` for no filter)."""
    environment = scope.environment if scope.environment is not None else projection.ALL
    service = scope.service if scope.service is not None else projection.ALL
    return statement.where(table.environment == environment, table.service == service)


def _grouped_counts(table):  # noqa: ANN001, ANN202 - SQLAlchemy select over a count table
    sums = [func.sum(getattr(table, name)).label(name) for name in COUNT_FIELDS]
    return select(table.trigger, table.trigger_type, *sums).group_by(table.trigger, table.trigger_type)


def _grouped_plans():  # noqa: ANN202 - SQLAlchemy select over the plans
    """Select the same sums as the count tables, computed from counted plan rows."""
    by_status = [
        func.sum(case((StatsPlan.status == status, 1), else_=0)).label(status)
        for status in ("pending", "in_progress", "completed", "failed", "cancelled")
    ]
    return select(
        StatsPlan.trigger,
        StatsPlan.trigger_type,
        func.count().label("total"),
        *by_status,
        func.sum(StatsPlan.counted_duration_ms).label("duration_sum_ms"),
        func.count(StatsPlan.counted_duration_ms).label("duration_count"),
    ).group_by(StatsPlan.trigger, StatsPlan.trigger_type)


async def load_stats(session: AsyncSession, scope: StatsFilter) -> dict[str, object]:
    """Return the statistics document for ``scope`` from the count tables.

    Without a time range it sums the all-time counts. With one, it sums the daily counts of the
    whole days inside the range and sums only the plans of the partial days at its edges.
    """
    totals = Totals()
    if scope.since is None and scope.until is None:
        statement = _count_level(_grouped_counts(StatsTotalCount), StatsTotalCount, scope)
        await _add_grouped(session, totals, statement)
        return stats_document(totals)

    ranges = plan_range(scope.since, scope.until)
    parts = []
    if ranges.has_whole_days:
        days = _count_level(_grouped_counts(StatsDailyCount), StatsDailyCount, scope)
        if ranges.first_day is not None:
            days = days.where(StatsDailyCount.day >= ranges.first_day)
        if ranges.end_day is not None:
            days = days.where(StatsDailyCount.day < ranges.end_day)
        parts.append(days)
    if ranges.partial:
        spans = [
            and_(StatsPlan.bucket_at >= start, StatsPlan.bucket_at < end)
            for start, end in ranges.partial
        ]
        parts.append(_scoped(_grouped_plans(), StatsPlan, scope).where(or_(*spans)))
    if parts:
        # One statement, so a range with partial edges costs one round trip.
        await _add_grouped(session, totals, parts[0] if len(parts) == 1 else union_all(*parts))
    return stats_document(totals)


async def _add_grouped(session: AsyncSession, totals: Totals, statement) -> None:  # noqa: ANN001
    for row in (await session.execute(statement)).all():
        counts = {name: getattr(row, name) for name in COUNT_FIELDS}
        totals.add(row.trigger, row.trigger_type, counts)


@dataclass(frozen=True)
class PlanFilter:
    """Filters and paging of the plan list."""

    environment: str | None = None
    service: str | None = None
    status: str | None = None
    limit: int = 50
    offset: int = 0


async def list_plans(session: AsyncSession, query: PlanFilter) -> tuple[Sequence[StatsPlan], int]:
    """Return one page of plans, newest first, and the number of plans that match."""
    scope = StatsFilter(environment=query.environment, service=query.service)
    matching = _scoped(select(StatsPlan), StatsPlan, scope)
    if query.status is not None:
        matching = matching.where(StatsPlan.status == query.status)
    page = matching.order_by(StatsPlan.sort_at.desc(), StatsPlan.id.desc())
    page = page.limit(query.limit).offset(query.offset)
    plans = (await session.scalars(page)).all()
    total = await session.scalar(select(func.count()).select_from(matching.subquery()))
    return plans, int(total or 0)


@dataclass(frozen=True)
class SignalFilter:
    """Filters and paging of the signal list; a None field does not restrict it."""

    kind: str | None = None
    scope: StatsFilter = StatsFilter()
    limit: int = 50
    offset: int = 0


async def list_signals(
    session: AsyncSession, query: SignalFilter
) -> tuple[Sequence[StatsSignal], int]:
    """Return one page of signals, newest first, and the number of signals that match."""
    matching = _scoped(select(StatsSignal), StatsSignal, query.scope)
    if query.kind is not None:
        matching = matching.where(StatsSignal.kind == query.kind)
    if query.scope.since is not None:
        matching = matching.where(StatsSignal.occurred_at >= query.scope.since)
    if query.scope.until is not None:
        matching = matching.where(StatsSignal.occurred_at < query.scope.until)
    page = matching.order_by(StatsSignal.occurred_at.desc(), StatsSignal.event_id.desc())
    signals = (await session.scalars(page.limit(query.limit).offset(query.offset))).all()
    total = await session.scalar(select(func.count()).select_from(matching.subquery()))
    return signals, int(total or 0)


async def steps_of(session: AsyncSession, plan_ids: Sequence[str]) -> dict[str, list[StatsStep]]:
    """Return the known steps of each plan, by plan id."""
    found: dict[str, list[StatsStep]] = {plan_id: [] for plan_id in plan_ids}
    if not plan_ids:
        return found
    statement = select(StatsStep).where(StatsStep.plan_id.in_(list(plan_ids)))
    for step in (await session.scalars(statement)).all():
        found[step.plan_id].append(step)
    return found


async def reports_available(session: AsyncSession, plan_ids: Sequence[str]) -> set[str]:
    """Return the ids among ``plan_ids`` that have an incident report."""
    if not plan_ids:
        return set()
    statement = select(StatsReport.plan_id).where(StatsReport.plan_id.in_(list(plan_ids)))
    return set((await session.scalars(statement)).all())


async def get_plan(session: AsyncSession, plan_id: str) -> StatsPlan | None:
    """Return the plan, or None when no event of it has arrived."""
    return await session.get(StatsPlan, plan_id)


async def get_report(session: AsyncSession, plan_id: str) -> StatsReport | None:
    """Return the plan's incident report, or None when none has arrived."""
    return await session.get(StatsReport, plan_id)
