"""Reads of the live history stream (`api/routes/events.py`): one consistent snapshot per poll.

A poll reads, in one REPEATABLE READ snapshot, the deployment's status, the highest history id,
the rows after the client's cursor, and the snapshot's transaction horizon
(`pg_snapshot_xmin`/`pg_snapshot_xmax`), by which the stream tells when a row can no longer be
overtaken by a lower id that commits late (the route's docstring has the whole argument).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.deployment_reads import HISTORY_COLUMNS
from db.models import DeploymentHistory

ROWS_PER_POLL = 500

_HEAD = text(
    """
    SELECT pg_snapshot_xmin(snap)::text::bigint AS xmin,
           pg_snapshot_xmax(snap)::text::bigint AS xmax,
           d.status,
           d.updated_at,
           (SELECT max(h.id) FROM deployment_history h WHERE h.deployment_id = d.id) AS max_id
    FROM pg_current_snapshot() AS snap, deployments AS d
    WHERE d.id = :deployment_id
    """
)


@dataclass
class Poll:
    """What one snapshot shows: transaction horizon, status, and rows after the cursor."""

    xmin: int
    xmax: int
    status: str
    updated_at: datetime
    max_id: int
    rows: list[dict[str, Any]]


async def read_poll(session: AsyncSession, deployment_id: int, cursor: int) -> Poll | None:
    """One consistent snapshot, or None when the deployment is gone. Runs in a transaction of
    its own: `session` must not have started one."""
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    head = (await session.execute(_HEAD, {"deployment_id": deployment_id})).mappings().first()
    if head is None:
        return None
    history = DeploymentHistory
    rows = await session.execute(
        select(*HISTORY_COLUMNS)
        .where(history.deployment_id == deployment_id, history.id > cursor)
        .order_by(history.id)
        .limit(ROWS_PER_POLL)
    )
    return Poll(
        xmin=head["xmin"],
        xmax=head["xmax"],
        status=head["status"],
        updated_at=head["updated_at"],
        max_id=head["max_id"] or 0,
        rows=[dict(r) for r in rows.mappings()],
    )


async def has_rows_after(session: AsyncSession, deployment_id: int, cursor: int) -> bool:
    newer = await session.scalar(
        select(DeploymentHistory.id)
        .where(DeploymentHistory.deployment_id == deployment_id, DeploymentHistory.id > cursor)
        .limit(1)
    )
    return newer is not None
