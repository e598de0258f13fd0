"""Reads and writes shared by the activities and the API. Callers own the transaction."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import ARRAY, String, func, literal, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    FINAL_STATUSES,
    STATUS_ORDER,
    Deployment,
    DeploymentHistory,
    DiskAllocation,
    Template,
    status_rank,
)
from domain.validation import TemplateSnapshot
from workflows.contracts import DiskSpec, ValidatedDeployment


class DuplicateDeploymentName(Exception):
    """The user already has a deployment of this name."""


async def insert_deployment(
    session: AsyncSession,
    *,
    workflow_id: str,
    user_id: int,
    deployment_name: str,
    deployment: ValidatedDeployment,
) -> int | None:
    """Insert a pending deployment and its `created` row, keyed by workflow id.

    None when that workflow id already has its deployment. Raises DuplicateDeploymentName
    (the transaction is then unusable) when the user has one of that name.
    """
    try:
        deployment_id = await session.scalar(
            insert(Deployment)
            .values(
                user_id=user_id,
                template_id=deployment.template_id,
                deployment_name=deployment_name,
                status="pending",
                configuration=deployment.configuration,
                workflow_id=workflow_id,
            )
            .on_conflict_do_nothing(index_elements=["workflow_id"])
            .returning(Deployment.id)
        )
    except IntegrityError as exc:
        if "deployments_user_name_key" not in str(exc.orig):
            raise
        raise DuplicateDeploymentName(
            f"a deployment named {deployment_name!r} already exists"
        ) from None
    if deployment_id is None:
        return None
    await insert_disks(session, deployment_id, deployment.disks)
    await add_history(
        session,
        deployment_id,
        "created",
        "pending",
        "Deployment created",
        {
            "template": deployment.template_name,
            "template_version": deployment.template_version,
            "workflow_id": workflow_id,
        },
    )
    return deployment_id


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


async def insert_disks(session: AsyncSession, deployment_id: int, disks: list[DiskSpec]) -> None:
    if disks:
        await session.execute(
            insert(DiskAllocation),
            [{"deployment_id": deployment_id, **dataclasses.asdict(disk)} for disk in disks],
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
    """Move a deployment forward to `status`; never backwards, never out of a final status.

    One conditional UPDATE: its row lock orders concurrent writers, and the condition is
    re-checked on the locked row, so no separate SELECT ... FOR UPDATE is needed."""
    current_rank = func.array_position(
        literal(list(STATUS_ORDER), ARRAY(String)), Deployment.status
    )
    stmt = (
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.status.not_in(FINAL_STATUSES))
        .values(status=status, updated_at=func.now())
        .returning(Deployment.id)
    )
    if status not in FINAL_STATUSES:
        # array_position counts from 1, status_rank from 0.
        stmt = stmt.where(current_rank < status_rank(status) + 1)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


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
