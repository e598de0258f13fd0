"""The SQL of quotas (api/quotas.py): a user's row locked while their quota is checked, what
they use now, and the reservations that launches and resizes hold until their rows exist.

What a user uses is computed from the rows, never kept as a counter, so cancel, destroy and
rejection release it by moving the status alone:

- active: their deployments not in a terminal status (cancelled, destroyed, rejected: failed
  ones keep their disks and count), plus their launches reserved and not yet recorded (no
  deployment row with the reservation's workflow id; one per workflow id, as a retry with the
  same Idempotency-Key names the same workflow).
- total GB: per disk of each of those deployments, the largest of its row's size, the sizes its
  changes asked for (`change-requested` history rows: the rows take a grown size only once a
  run made it, and a failed change's retry deploys it) and the sizes reserved by a resize in
  flight; plus the disks of the launches not yet recorded. Disks only grow, so the largest is
  what the deployment holds or is about to. A `succeeded` deployment's rows hold the sizes its
  last run made, which every change before it asked for, so only the other statuses' history
  is read (a deployment's history also holds every playbook event: never read it whole).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Integer, String, bindparam, delete, func, insert, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import QuotaReservation
from vocabulary.statuses import TERMINAL_STATUSES, DeploymentStatus

TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)


@dataclasses.dataclass(frozen=True)
class QuotaOwner:
    """The user whose quota a request counts against, read under their row lock."""

    id: int
    role: str
    max_active_deployments: int | None
    max_total_gb: int | None


@dataclasses.dataclass(frozen=True)
class QuotaUse:
    active_deployments: int
    total_gb: int


async def lock_owner(session: AsyncSession, user_id: int) -> QuotaOwner | None:
    """The user's row, locked until the transaction ends: quota checks of one user run one at a
    time. FOR NO KEY UPDATE, not FOR UPDATE: inserts that reference the user (their
    deployments, history) take KEY SHARE locks on the row and are not held up."""
    row = (
        await (await session.connection()).execute(
            text(
                "SELECT id, role, max_active_deployments, max_total_gb FROM users "
                "WHERE id = :id FOR NO KEY UPDATE"
            ),
            {"id": user_id},
        )
    ).one_or_none()
    return None if row is None else QuotaOwner(*row)


_USE = text(
    """
WITH reserved AS (
    SELECT r.id, r.user_id, r.deployment_id, r.workflow_id, r.disks
    FROM quota_reservations r
    WHERE r.user_id = ANY(:users) AND r.expires_at > now()
      AND r.workflow_id IS DISTINCT FROM :skip_workflow
),
pending AS (
    SELECT DISTINCT ON (r.workflow_id) r.user_id, r.disks
    FROM reserved r
    WHERE NOT EXISTS (SELECT 1 FROM deployments d WHERE d.workflow_id = r.workflow_id)
    ORDER BY r.workflow_id, r.id DESC
),
live AS (
    SELECT d.id, d.user_id, d.status FROM deployments d
    WHERE d.user_id = ANY(:users) AND d.status <> ALL(:terminal)
),
sizes AS (
    SELECT live.user_id, a.deployment_id, a.mount_point, a.size_gb
    FROM live JOIN disk_allocations a ON a.deployment_id = live.id
    UNION ALL
    SELECT live.user_id, h.deployment_id, asked.mount_point, asked.size_gb
    FROM live JOIN deployment_history h ON h.deployment_id = live.id
    CROSS JOIN LATERAL jsonb_to_recordset(
        CASE WHEN jsonb_typeof(h.details -> 'disks') = 'array' THEN h.details -> 'disks' END
    ) AS asked(mount_point text, size_gb int)
    WHERE live.status <> :succeeded_status AND h.event_key LIKE 'change-requested%'
    UNION ALL
    SELECT live.user_id, r.deployment_id, asked.mount_point, asked.size_gb
    FROM live JOIN reserved r ON r.deployment_id = live.id
    CROSS JOIN LATERAL jsonb_to_recordset(r.disks) AS asked(mount_point text, size_gb int)
),
per_disk AS (
    SELECT user_id, max(size_gb) AS size_gb FROM sizes GROUP BY user_id, deployment_id, mount_point
)
SELECT u.id,
    (SELECT count(*) FROM live WHERE live.user_id = u.id)
        + (SELECT count(*) FROM pending p WHERE p.user_id = u.id) AS active_deployments,
    COALESCE((SELECT sum(per_disk.size_gb) FROM per_disk WHERE per_disk.user_id = u.id), 0)
        + COALESCE((
            SELECT sum(asked.size_gb) FROM pending p
            CROSS JOIN LATERAL jsonb_to_recordset(p.disks) AS asked(size_gb int)
            WHERE p.user_id = u.id
        ), 0) AS total_gb
FROM unnest(CAST(:users AS integer[])) AS u(id)
"""
).bindparams(
    bindparam("users", type_=ARRAY(Integer)),
    bindparam("terminal", type_=ARRAY(String)),
    bindparam("skip_workflow", type_=String),
    bindparam("succeeded_status", type_=String),
)


async def quota_uses(
    session: AsyncSession, user_ids: Sequence[int], *, skip_workflow: str | None = None
) -> dict[int, QuotaUse]:
    """What each user uses now, in one statement. `skip_workflow`: leave out the launch
    reservations of that workflow (a launch that retries its own Idempotency-Key replaces them)."""
    rows = await (await session.connection()).execute(
        _USE,
        {
            "users": list(user_ids),
            "terminal": TERMINAL,
            "skip_workflow": skip_workflow,
            "succeeded_status": DeploymentStatus.SUCCEEDED.value,
        },
    )
    return {row.id: QuotaUse(int(row.active_deployments), int(row.total_gb)) for row in rows}


async def quota_use(
    session: AsyncSession, user_id: int, *, skip_workflow: str | None = None
) -> QuotaUse:
    return (await quota_uses(session, [user_id], skip_workflow=skip_workflow))[user_id]


async def reserve(
    session: AsyncSession,
    *,
    kind: str,
    user_id: int,
    deployment_id: int,
    workflow_id: str,
    disks: list[dict[str, Any]],
    ttl_s: int,
) -> int:
    """A reservation (launch: every disk of the new deployment; resize: the asked sizes); its id."""
    stmt = (
        insert(QuotaReservation)
        .values(
            kind=kind,
            user_id=user_id,
            deployment_id=deployment_id,
            workflow_id=workflow_id,
            disks=bindparam("disks", disks, type_=JSONB),
            expires_at=func.now() + timedelta(seconds=ttl_s),
        )
        .returning(QuotaReservation.id)
    )
    return int((await (await session.connection()).execute(stmt)).scalar_one())


async def release(session: AsyncSession, reservation_id: int) -> None:
    await (await session.connection()).execute(
        delete(QuotaReservation).where(QuotaReservation.id == reservation_id)
    )


async def release_launches(session: AsyncSession, workflow_id: str) -> None:
    """Every launch reservation of this workflow: its deployment row exists now, or the start
    is known to have failed."""
    await (await session.connection()).execute(
        delete(QuotaReservation).where(
            QuotaReservation.kind == "launch", QuotaReservation.workflow_id == workflow_id
        )
    )


_PRUNE = text(
    """
DELETE FROM quota_reservations r
WHERE r.user_id = :user_id
  AND (r.expires_at <= now()
       OR (r.kind = 'launch'
           AND EXISTS (SELECT 1 FROM deployments d WHERE d.workflow_id = r.workflow_id)))
"""
).bindparams(bindparam("user_id", type_=BigInteger))


async def prune(session: AsyncSession, user_id: int) -> None:
    """Drop the user's reservations that count no more: expired, or launches whose deployment
    the workflow recorded itself. Under the user's lock, before a check."""
    await (await session.connection()).execute(_PRUNE, {"user_id": user_id})
