"""Reads and writes shared by the activities and the API. Callers own the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import FINAL_STATUSES, Deployment, DeploymentHistory, Template, status_rank
from domain.validation import TemplateSnapshot
from workflows.contracts import DiskSpec


async def load_template_snapshot(
    session: AsyncSession, template_id: int
) -> TemplateSnapshot | None:
    template = await session.get(Template, template_id)
    if template is None:
        return None
    return TemplateSnapshot(
        id=template.id,
        name=template.name,
        version=template.version,
        service_type=template.service_type,
        is_active=template.is_active,
        configuration=dict(template.configuration),
        disks=[
            DiskSpec(
                disk_type=d.disk_type,
                size_gb=d.size_gb,
                mount_point=d.mount_point,
                volume_group=d.volume_group,
                logical_volume=d.logical_volume,
                filesystem_type=d.filesystem_type,
                allocation_params=dict(d.allocation_params),
            )
            for d in template.disk_allocations
        ],
    )


async def add_history(
    session: AsyncSession,
    deployment_id: int,
    event_key: str,
    status: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> bool:
    """Insert one history row unless its event key is already there. True when it was new."""
    stmt = (
        insert(DeploymentHistory)
        .values(
            deployment_id=deployment_id,
            event_key=event_key,
            status=status,
            message=message,
            details=details or {},
        )
        .on_conflict_do_nothing(constraint="deployment_history_event_key")
        .returning(DeploymentHistory.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def advance_status(session: AsyncSession, deployment_id: int, status: str) -> bool:
    """Move a deployment forward to `status`; never backwards, never out of a final status."""
    current = await session.scalar(
        select(Deployment.status).where(Deployment.id == deployment_id).with_for_update()
    )
    if current is None or current in FINAL_STATUSES:
        return False
    if status not in FINAL_STATUSES and status_rank(status) <= status_rank(current):
        return False
    await session.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id)
        .values(status=status, updated_at=func.now())
    )
    return True


async def record_step(
    session: AsyncSession,
    deployment_id: int,
    event_key: str,
    status: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> bool:
    """A step's status change and its history row, once per event key. True when it was new."""
    if not await add_history(session, deployment_id, event_key, status, message, details):
        return False
    await advance_status(session, deployment_id, status)
    return True
