"""The callback endpoint's SQL: the deployment a request speaks for, the memory of accepted
signatures (replay protection), the events as history rows, and the run's first failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CallbackSignature, Deployment, DeploymentHistory
from vocabulary.callback_events import FAILING_EVENTS


def event_key_prefix(run: int) -> str:
    """History rows of callback events are keyed by their run and counter: a re-sent event writes
    nothing, and the run after a retry (whose counters start at 1 again) writes its own rows."""
    return "event:" if run == 1 else f"run{run}:event:"


@dataclass(frozen=True)
class CallbackTarget:
    """What the endpoint needs of the deployment a callback names."""

    id: int
    workflow_id: str
    status: str
    attempt: int


@dataclass(frozen=True)
class EventRow:
    counter: int
    message: str
    details: dict[str, Any]


async def callback_target(session: AsyncSession, deployment_id: int) -> CallbackTarget | None:
    row = (
        await session.execute(
            select(
                Deployment.id, Deployment.workflow_id, Deployment.status, Deployment.attempt
            ).where(Deployment.id == deployment_id)
        )
    ).first()
    if row is None:
        return None
    return CallbackTarget(row.id, row.workflow_id, row.status, row.attempt)


async def remember_signature(
    session: AsyncSession, deployment_id: int, signature: str, *, memory_s: int
) -> bool:
    """Whether this is the first time the signature is seen. Forgets signatures older than
    `memory_s`, by which time the request's timestamp is stale anyway."""
    first_time = await session.scalar(
        insert(CallbackSignature)
        .values(signature=signature, deployment_id=deployment_id)
        .on_conflict_do_nothing()
        .returning(CallbackSignature.signature)
    )
    await session.execute(
        delete(CallbackSignature).where(
            CallbackSignature.received_at
            < func.now() - literal_column(f"interval '{int(memory_s)} seconds'")
        )
    )
    return first_time is not None


async def store_event_rows(
    session: AsyncSession, target: CallbackTarget, run: int, events: list[EventRow]
) -> int:
    """Inserts the rows not stored yet; returns how many were new."""
    prefix = event_key_prefix(run)
    rows = [
        {
            "deployment_id": target.id,
            "event_key": f"{prefix}{event.counter}",
            "status": target.status,
            "message": event.message,
            "details": event.details,
            "attempt": target.attempt,
        }
        for event in events
    ]
    # Rows as parameters, not .values(rows): the statement compiles once and is cached, and is
    # still sent as multi-row INSERTs (a third of the API's CPU went to recompiling it).
    written = await session.execute(
        insert(DeploymentHistory)
        .on_conflict_do_nothing(constraint="deployment_history_event_key")
        .returning(DeploymentHistory.id),
        rows,
    )
    return len(written.all())


async def first_failing_event(
    session: AsyncSession, deployment_id: int, run: int
) -> dict[str, Any] | None:
    """The stored event of the run's first failing host and task, ignored failures left out."""
    history = DeploymentHistory
    details: dict[str, Any] | None = (
        await session.execute(
            select(history.details)
            .where(
                history.deployment_id == deployment_id,
                history.event_key.like(f"{event_key_prefix(run)}%"),
                history.details["event"].astext.in_(FAILING_EVENTS),
                # A failure the playbook chose to ignore is not why the run failed.
                history.details["data"]["ignore_errors"].astext.is_distinct_from("true"),
            )
            .order_by(history.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    return details
