"""Reads and writes of the planner's tables, inside a session the caller commits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import Executable

from services.planner.decision import LOOP_GUARD_WINDOW, BreachContext
from services.planner.models import (
    ACTIVE_STATUSES,
    BadVersion,
    Cooldown,
    CurrentVersion,
    Deployment,
    InboxEntry,
    OutboxMessage,
    Plan,
    Suppression,
)
from services.planner.targets import DeploymentRecord
from shared.contracts import Contract, DeploymentRecorded


async def lock_for_write(session: AsyncSession) -> None:
    """Take SQLite's write lock before the transaction reads anything.

    SQLite in WAL mode cannot turn a transaction that has already read into a writer once
    another connection has committed in between: it fails at once with "database is locked"
    instead of waiting. A write as the first statement makes the transaction wait for the lock
    (up to the busy timeout) and then read the latest data. PostgreSQL needs nothing here.
    """
    if session.bind.dialect.name == "sqlite":
        await session.execute(delete(InboxEntry).where(InboxEntry.event_id == ""))


async def add_inbox_entry(
    session: AsyncSession, event_id: UUID, subject: str, now: datetime
) -> None:
    """Record ``event_id`` as handled; the flush raises IntegrityError for a repeat."""
    session.add(InboxEntry(event_id=str(event_id), subject=subject, handled_at=now))
    await session.flush()


async def claim_inbox_entry(
    session: AsyncSession, event_id: UUID, subject: str, now: datetime
) -> bool:
    """Record ``event_id`` as handled and return True, or return False when it already was.

    As a write, it takes SQLite's write lock like :func:`lock_for_write`, so it can be a
    transaction's first statement in place of that call and :func:`is_handled`. On PostgreSQL
    an insert of the same id by a transaction still open waits for that transaction to end.
    """
    connection = await session.connection()
    # RETURNING shows whether the row went in: this INSERT's rowcount was not 1 on PostgreSQL
    # (psycopg) even when it inserted.
    inserted = await connection.scalar(
        _statements(connection).claim_inbox,
        {"event_id": str(event_id), "subject": subject, "handled_at": now},
    )
    return inserted is not None


async def is_handled(session: AsyncSession, event_id: UUID) -> bool:
    """Return whether ``event_id`` is in the inbox."""
    return await session.get(InboxEntry, str(event_id)) is not None


async def load_history(
    session: AsyncSession, environment: str, service: str
) -> list[DeploymentRecord]:
    """Return the deployment history of one service, in storage order."""
    rows = await session.scalars(
        select(Deployment)
        .where(Deployment.environment == environment, Deployment.service == service)
        .order_by(Deployment.id)
    )
    return [DeploymentRecord(r.version, r.status, r.deployed_at, r.id) for r in rows]


async def current_version(
    session: AsyncSession, environment: str, service: str
) -> CurrentVersion | None:
    """Return the current version row, or None before the first successful deployment."""
    return await session.get(CurrentVersion, (environment, service))


async def bad_versions(session: AsyncSession, environment: str, service: str) -> set[str]:
    """Return the versions marked bad for one service."""
    rows = await session.scalars(
        select(BadVersion.version).where(
            BadVersion.environment == environment, BadVersion.service == service
        )
    )
    return set(rows)


async def active_plan(session: AsyncSession, environment: str, service: str) -> Plan | None:
    """Return the pending or in-progress plan of one service, if any."""
    return await session.scalar(
        select(Plan).where(
            Plan.environment == environment,
            Plan.service == service,
            Plan.status.in_(ACTIVE_STATUSES),
        )
    )


async def load_breach_context(
    session: AsyncSession, environment: str, service: str, trigger: str, now: datetime
) -> BreachContext:
    """Read everything :func:`services.planner.decision.decide` needs.

    The single-value reads share one SELECT of scalar subqueries, because every statement
    costs a round trip (a thread hop with aiosqlite).
    """
    connection = await session.connection()
    statements = _statements(connection)
    key = {"environment": environment, "service": service}
    values = (
        await connection.execute(
            statements.breach_values,
            {**key, "trigger": trigger, "since": now - LOOP_GUARD_WINDOW},
        )
    ).one()
    history = await connection.execute(statements.history, key)
    bad = await connection.scalars(statements.bad_versions, key)
    return BreachContext(
        active_plan_id=values.active_plan_id,
        cooldown_until=values.until,
        history=[DeploymentRecord(r.version, r.status, r.deployed_at, r.id) for r in history],
        current_version=values.current_version,
        bad_versions=set(bad),
        recent_automatic_plans=values.recent or 0,
        cooldown_cause=values.cause,
    )


def _insert_for(session: AsyncSession) -> Callable[..., Any]:
    """Return the dialect's INSERT, which has ON CONFLICT on both SQLite and PostgreSQL."""
    return sqlite_insert if session.bind.dialect.name == "sqlite" else postgresql_insert


async def set_cooldown(
    session: AsyncSession,
    environment: str,
    service: str,
    trigger: str,
    *,
    until: datetime,
    now: datetime,
    cause: str,
    plan_id: str | None,
) -> None:
    """Insert or replace the cooldown of one trigger."""
    connection = await session.connection()
    await connection.execute(
        _statements(connection).set_cooldown,
        {
            "environment": environment,
            "service": service,
            "trigger": trigger,
            "until": until,
            "set_at": now,
            "cause": cause,
            "plan_id": plan_id,
        },
    )


async def mark_bad(
    session: AsyncSession,
    environment: str,
    service: str,
    version: str,
    *,
    plan_id: str,
    reason: str,
    now: datetime,
) -> bool:
    """Mark ``version`` bad and return True, or return False when it already has a mark."""
    connection = await session.connection()
    marked = await connection.scalar(
        _statements(connection).mark_bad,
        {
            "environment": environment,
            "service": service,
            "version": version,
            "plan_id": plan_id,
            "reason": reason,
            "marked_at": now,
        },
    )
    return marked is not None


async def add_plan(session: AsyncSession, plan: Plan) -> None:
    """Insert a new plan; raises IntegrityError when its service already has an active plan."""
    connection = await session.connection()
    # Unset attributes are left out, so the columns' defaults apply as in an ORM flush.
    values = {
        column.key: value
        for column in Plan.__table__.columns
        if (value := getattr(plan, column.key)) is not None
    }
    await connection.execute(_statements(connection).add_plan, values)


async def add_deployment(session: AsyncSession, record: DeploymentRecorded, now: datetime) -> None:
    """Store a deployment record and move the current version forward when it succeeded.

    A successful record older than the current version's (records can arrive out of order)
    joins the history without replacing the current version.
    """
    session.add(
        Deployment(
            event_id=str(record.event_id),
            environment=record.environment,
            service=record.service,
            version=record.version,
            status=record.status,
            actor=record.actor,
            deployed_at=record.deployed_at,
            recorded_at=now,
        )
    )
    await session.flush()
    if record.status == "succeeded":
        await set_current_version(
            session, record.environment, record.service, record.version, record.deployed_at, now
        )


async def set_current_version(
    session: AsyncSession,
    environment: str,
    service: str,
    version: str,
    deployed_at: datetime,
    now: datetime,
) -> None:
    """Make ``version`` current unless a newer deployment already is."""
    row = await current_version(session, environment, service)
    if row is None:
        session.add(
            CurrentVersion(
                environment=environment,
                service=service,
                version=version,
                deployed_at=deployed_at,
                updated_at=now,
            )
        )
    elif deployed_at >= row.deployed_at:
        row.version = version
        row.deployed_at = deployed_at
        row.updated_at = now
    await session.flush()


async def add_outbox(
    session: AsyncSession, source_id: str, subject: str, event: Contract, now: datetime
) -> OutboxMessage:
    """Store ``event`` for publishing after the commit."""
    return (await add_outbox_messages(session, source_id, [(subject, event)], now))[0]


async def add_outbox_messages(
    session: AsyncSession,
    source_id: str,
    messages: Sequence[tuple[str, Contract]],
    now: datetime,
) -> list[OutboxMessage]:
    """Store events for publishing after the commit, in one statement, and return their rows.

    The rows are not in the session; their ids come back from the INSERT.
    """
    rows = [
        {
            "event_id": str(event.event_id),
            "source_id": source_id,
            "subject": subject,
            "kind": type(event).__name__,
            "payload": event.model_dump_json(),
            "created_at": now,
            "published_at": None,
        }
        for subject, event in messages
    ]
    connection = await session.connection()
    ids = await connection.scalars(_statements(connection).add_outbox, rows)
    return [OutboxMessage(id=outbox_id, **row) for outbox_id, row in zip(ids, rows, strict=True)]


async def unpublished(
    session: AsyncSession, *, source_id: str | None = None, created_before: datetime | None = None
) -> Sequence[OutboxMessage]:
    """Return outbox messages not yet published, oldest first."""
    query = select(OutboxMessage).where(OutboxMessage.published_at.is_(None))
    if source_id is not None:
        query = query.where(OutboxMessage.source_id == source_id)
    if created_before is not None:
        query = query.where(OutboxMessage.created_at < created_before)
    return (await session.scalars(query.order_by(OutboxMessage.id).limit(500))).all()


async def mark_published(
    session: AsyncSession, outbox_ids: Sequence[int], now: datetime
) -> None:
    """Record that the outbox messages ``outbox_ids`` reached the stream."""
    connection = await session.connection()
    await connection.execute(
        _statements(connection).mark_published, {"ids": list(outbox_ids), "published_at": now}
    )


async def add_suppression(session: AsyncSession, row: Suppression) -> None:
    """Store a suppression."""
    session.add(row)
    await session.flush()


async def due_deferred(session: AsyncSession, now: datetime, limit: int = 100) -> list[str]:
    """Return the ids of deferred suppressions due for their re-check, oldest due first.

    Suppressions of a service with an active plan are left out: they wait for it to finish.
    """
    active_plan_exists = exists().where(
        Plan.environment == Suppression.environment,
        Plan.service == Suppression.service,
        Plan.status.in_(ACTIVE_STATUSES),
    )
    rows = await session.scalars(
        select(Suppression.event_id)
        .where(
            Suppression.recheck_at.is_not(None),
            Suppression.rechecked_at.is_(None),
            Suppression.recheck_at <= now,
            ~active_plan_exists,
        )
        .order_by(Suppression.recheck_at, Suppression.created_at)
        .limit(limit)
    )
    return list(rows)


async def lock_deferred(session: AsyncSession, event_id: str) -> Suppression | None:
    """Return a deferred suppression not yet re-checked, locked until the transaction ends.

    On PostgreSQL a second replica waits for the lock and then finds the row re-checked.
    SQLite has no row locks; :func:`lock_for_write` serialises its writers instead.
    """
    return await session.scalar(
        select(Suppression)
        .where(
            Suppression.event_id == event_id,
            Suppression.recheck_at.is_not(None),
            Suppression.rechecked_at.is_(None),
        )
        .with_for_update()
    )


@dataclass(frozen=True)
class _Statements:
    """The statements of the breach path, built once per dialect.

    A statement built on every call costs more Python time than SQLite takes to run it. A
    statement built once is compiled once, and later calls only bind new parameters.
    """

    claim_inbox: Executable
    breach_values: Executable
    history: Executable
    bad_versions: Executable
    add_plan: Executable
    mark_bad: Executable
    set_cooldown: Executable
    add_outbox: Executable
    mark_published: Executable


def _statements(connection: AsyncConnection) -> _Statements:
    return _build_statements(connection.dialect.name)


@cache
def _build_statements(dialect: str) -> _Statements:
    upsert = sqlite_insert if dialect == "sqlite" else postgresql_insert
    environment, service = bindparam("environment"), bindparam("service")
    is_plan_service = (Plan.environment == environment, Plan.service == service)
    cooldown_key = (
        Cooldown.environment == environment,
        Cooldown.service == service,
        Cooldown.trigger == bindparam("trigger"),
    )
    breach_values = select(
        select(Plan.id)
        .where(*is_plan_service, Plan.status.in_(ACTIVE_STATUSES))
        .limit(1)
        .scalar_subquery()
        .label("active_plan_id"),
        select(Cooldown.until).where(*cooldown_key).scalar_subquery().label("until"),
        select(Cooldown.cause).where(*cooldown_key).scalar_subquery().label("cause"),
        select(CurrentVersion.version)
        .where(CurrentVersion.environment == environment, CurrentVersion.service == service)
        .scalar_subquery()
        .label("current_version"),
        select(func.count())
        .select_from(Plan)
        .where(
            *is_plan_service,
            Plan.trigger_type == "automatic",
            Plan.created_at > bindparam("since", type_=Plan.created_at.type),
        )
        .scalar_subquery()
        .label("recent"),
    )
    cooldown = upsert(Cooldown.__table__)
    return _Statements(
        claim_inbox=upsert(InboxEntry.__table__)
        .on_conflict_do_nothing()
        .returning(InboxEntry.event_id),
        breach_values=breach_values,
        history=select(Deployment.version, Deployment.status, Deployment.deployed_at, Deployment.id)
        .where(Deployment.environment == environment, Deployment.service == service)
        .order_by(Deployment.id),
        bad_versions=select(BadVersion.version).where(
            BadVersion.environment == environment, BadVersion.service == service
        ),
        add_plan=insert(Plan.__table__),
        # RETURNING shows whether the row went in, on both databases.
        mark_bad=upsert(BadVersion.__table__).on_conflict_do_nothing().returning(BadVersion.version),
        set_cooldown=cooldown.on_conflict_do_update(
            index_elements=["environment", "service", "trigger"],
            set_={
                name: cooldown.excluded[name] for name in ("until", "set_at", "cause", "plan_id")
            },
        ),
        add_outbox=insert(OutboxMessage.__table__).returning(
            OutboxMessage.id, sort_by_parameter_order=True
        ),
        mark_published=update(OutboxMessage.__table__)
        .where(OutboxMessage.id.in_(bindparam("ids", expanding=True)))
        .values(published_at=bindparam("published_at")),
    )
