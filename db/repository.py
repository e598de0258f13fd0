"""Reads and writes shared by the activities and the API. Callers own the transaction."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    Select,
    String,
    bindparam,
    column,
    exists,
    func,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    FINAL_STATUSES,
    STATUS_ORDER,
    Deployment,
    DeploymentHistory,
    DiskAllocation,
    Template,
    TemplateDiskAllocation,
    status_rank,
)
from domain.validation import TemplateSnapshot
from workflows.contracts import DiskSpec, ValidatedDeployment


class DuplicateDeploymentName(Exception):
    """The user already has a deployment of this name."""


@dataclasses.dataclass
class NewDeployment:
    id: int
    created_at: datetime
    updated_at: datetime


# The disks arrive as one JSON array, so that one statement text serves any number of them.
_DISK_ROWS = (
    func.jsonb_to_recordset(bindparam("disks", type_=JSONB))
    .table_valued(
        column("disk_type", String),
        column("size_gb", Integer),
        column("mount_point", String),
        column("volume_group", String),
        column("logical_volume", String),
        column("filesystem_type", String),
        column("allocation_params", JSONB),
    )
    .render_derived(name="disk", with_types=True)
)
_DISK_COLUMNS = [c.name for c in _DISK_ROWS.c]


def _insert_deployment_statement(values: dict[str, Any], created: dict[str, Any]) -> Select[Any]:
    """The deployment, its disks and its `created` row in one statement (one round trip)."""
    new = (
        insert(Deployment)
        .values(values)
        .on_conflict_do_nothing(index_elements=["workflow_id"])
        .returning(Deployment.id, Deployment.created_at, Deployment.updated_at)
        .cte("new_deployment")
    )
    disks = (
        insert(DiskAllocation)
        .from_select(
            ["deployment_id", *_DISK_COLUMNS],
            select(new.c.id, *_DISK_ROWS.c).select_from(new).join(_DISK_ROWS, true()),
        )
        .cte("new_disks")
    )
    history = (
        insert(DeploymentHistory)
        .from_select(
            ["deployment_id", "event_key", "status", "message", "details"],
            select(
                new.c.id,
                literal("created"),
                literal("pending"),
                literal("Deployment created"),
                literal(created, JSONB),
            ),
        )
        .cte("new_history")
    )
    return select(new.c.id, new.c.created_at, new.c.updated_at).add_cte(disks, history)


async def insert_deployment(
    session: AsyncSession,
    *,
    workflow_id: str,
    user_id: int,
    deployment_name: str,
    deployment: ValidatedDeployment,
) -> NewDeployment | None:
    """Insert a pending deployment, its disks (the template's, overrides applied) and its
    `created` row, keyed by workflow id.

    None when that workflow id already has its deployment. Raises DuplicateDeploymentName
    (the transaction is then unusable) when the user has one of that name.
    """
    stmt = _insert_deployment_statement(
        {
            "user_id": user_id,
            "template_id": deployment.template_id,
            "deployment_name": deployment_name,
            "status": "pending",
            "configuration": deployment.configuration,
            "workflow_id": workflow_id,
        },
        {
            "template": deployment.template_name,
            "template_version": deployment.template_version,
            "workflow_id": workflow_id,
        },
    )
    disks = [dataclasses.asdict(disk) for disk in deployment.disks]
    connection = await session.connection()  # Core: no ORM bookkeeping for a plain insert
    try:
        row = (await connection.execute(stmt, {"disks": disks})).one_or_none()
    except IntegrityError as exc:
        if "deployments_user_name_key" not in str(exc.orig):
            raise
        raise DuplicateDeploymentName(
            f"a deployment named {deployment_name!r} already exists"
        ) from None
    return None if row is None else NewDeployment(row.id, row.created_at, row.updated_at)


def disks_json(disk: type[DiskAllocation] | type[TemplateDiskAllocation], owner: Any) -> Any:
    """The disks matching `owner` (a condition on `disk`) as one JSON array in creation order,
    a scalar subquery: a template's or a deployment's disks read in the statement that needs
    them."""
    row = func.json_build_object(
        "disk_type", disk.disk_type,
        "size_gb", disk.size_gb,
        "mount_point", disk.mount_point,
        "volume_group", disk.volume_group,
        "logical_volume", disk.logical_volume,
        "filesystem_type", disk.filesystem_type,
        "allocation_params", disk.allocation_params,
    )  # fmt: skip
    return (
        select(
            func.coalesce(func.json_agg(aggregate_order_by(row, disk.id)), func.json_build_array())
        )
        .where(owner)
        .scalar_subquery()
    )


async def load_template_snapshot(
    session: AsyncSession, template_id: int
) -> TemplateSnapshot | None:
    """The template and its disks, read in one statement."""
    stmt = select(
        Template.id,
        Template.name,
        Template.version,
        Template.service_type,
        Template.is_active,
        Template.configuration,
        disks_json(TemplateDiskAllocation, TemplateDiskAllocation.template_id == Template.id).label(
            "disks"
        ),
    ).where(Template.id == template_id)
    row = (await (await session.connection()).execute(stmt)).one_or_none()
    if row is None:
        return None
    return TemplateSnapshot(
        id=row.id,
        name=row.name,
        version=row.version,
        service_type=row.service_type,
        is_active=row.is_active,
        configuration=dict(row.configuration),
        disks=[DiskSpec(**disk) for disk in row.disks],
    )


async def insert_disks(session: AsyncSession, deployment_id: int, disks: list[DiskSpec]) -> None:
    if disks:
        await session.execute(
            insert(DiskAllocation),
            [{"deployment_id": deployment_id, **dataclasses.asdict(disk)} for disk in disks],
        )


def _new_history(
    deployment_id: int, event_key: str, status: str, message: str, details: dict[str, Any] | None
) -> Any:
    return (
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


def _advance(deployment_id: int, status: str) -> Any:
    """UPDATE a deployment forward to `status`; never backwards, never out of a final status.

    The row lock of the UPDATE orders concurrent writers and its condition is re-checked on the
    locked row, so no separate SELECT ... FOR UPDATE is needed."""
    stmt = (
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.status.not_in(FINAL_STATUSES))
        .values(status=status, updated_at=func.now())
        .returning(Deployment.id)
    )
    if status not in FINAL_STATUSES:
        current_rank = func.array_position(
            literal(list(STATUS_ORDER), ARRAY(String)), Deployment.status
        )
        # array_position counts from 1, status_rank from 0.
        stmt = stmt.where(current_rank < status_rank(status) + 1)
    return stmt


async def record_step(
    session: AsyncSession,
    deployment_id: int,
    event_key: str,
    status: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> bool:
    """A step's status change and its history row, once per event key. True when it was new.

    One statement: the UPDATE runs only if the history row was inserted."""
    history = _new_history(deployment_id, event_key, status, message, details).cte("step")
    advanced = _advance(deployment_id, status).where(exists(select(history.c.id))).cte("moved")
    stmt = select(select(history.c.id).scalar_subquery()).add_cte(advanced)
    return (await (await session.connection()).execute(stmt)).scalar() is not None
