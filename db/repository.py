"""Reads and writes shared by the activities and the API. Callers own the transaction."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import (
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
    values,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Deployment,
    DeploymentHistory,
    DiskAllocation,
    Template,
    TemplateDiskAllocation,
)
from domain.validation import TemplateSnapshot
from vocabulary.contracts import (
    RecordApprovalInput,
    RecordLeaseInput,
    RecordStepInput,
    ValidatedDeployment,
)
from vocabulary.disks import DISK_FIELDS, DiskSpec
from vocabulary.operations import ENTERED_FROM
from vocabulary.runs import RunRef
from vocabulary.statuses import TERMINAL_STATUSES, DeploymentStatus, HistoryStatus


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
    .table_valued(*(column(name, DiskAllocation.__table__.c[name].type) for name in DISK_FIELDS))
    .render_derived(name="disk", with_types=True)
)


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
            ["deployment_id", *DISK_FIELDS],
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
                literal(HistoryStatus.CREATED.value),
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
    deployment_id: int | None = None,
    workflow_id: str,
    user_id: int,
    deployment_name: str,
    deployment: ValidatedDeployment,
) -> NewDeployment | None:
    """Insert a pending deployment, its disks (the template's, overrides applied) and its
    `created` row, keyed by workflow id; under `deployment_id` when given (the workflow writing
    the row its API lost), else under the next id.

    None when that workflow id already has its deployment. Raises DuplicateDeploymentName
    (the transaction is then unusable) when the user has one of that name.
    """
    stmt = _insert_deployment_statement(
        {
            **({} if deployment_id is None else {"id": deployment_id}),
            "user_id": user_id,
            "template_id": deployment.template_id,
            "deployment_name": deployment_name,
            "status": DeploymentStatus.PENDING.value,
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


def disks_json(
    disk: type[DiskAllocation] | type[TemplateDiskAllocation], owner: Any, *extra: str
) -> Any:
    """The disks matching `owner` (a condition on `disk`) as one JSON array in creation order,
    a scalar subquery: a template's or a deployment's disks read in the statement that needs
    them. `extra` names columns shown beyond the disk's fields (a deployment disk's state)."""
    names = (*DISK_FIELDS, *extra)
    row = func.json_build_object(*(v for name in names for v in (name, getattr(disk, name))))
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


async def find_deployment_by_workflow(
    session: AsyncSession, workflow_id: str
) -> tuple[int, str, int] | None:
    """(id, name, template id) of the deployment a workflow id names, if any."""
    stmt = select(Deployment.id, Deployment.deployment_name, Deployment.template_id).where(
        Deployment.workflow_id == workflow_id
    )
    row = (await (await session.connection()).execute(stmt)).one_or_none()  # Core: no ORM work
    return None if row is None else (int(row.id), row.deployment_name, int(row.template_id))


async def deployment_exists(session: AsyncSession, deployment_id: int) -> bool:
    stmt = select(exists().where(Deployment.id == deployment_id))
    return bool((await (await session.connection()).execute(stmt)).scalar())


async def record_run(session: AsyncSession, deployment_id: int, run: RunRef) -> None:
    """The deployment's current run reference (`jenkins_job_id` holds any runner's job id)."""
    await (await session.connection()).execute(
        update(Deployment)
        .where(Deployment.id == deployment_id)
        .values(jenkins_job_id=run.job_id, updated_at=func.now())
    )


def _new_history(step: RecordStepInput) -> Any:
    return (
        insert(DeploymentHistory)
        .values(
            deployment_id=step.deployment_id,
            event_key=step.event_key,
            status=step.status.value,
            message=step.message,
            details=step.details or {},
            attempt=step.attempt,
        )
        .on_conflict_do_nothing(constraint="deployment_history_event_key")
        .returning(DeploymentHistory.id)
    )


def _move(step: RecordStepInput) -> Any:
    """UPDATE the deployment to the step's status, only from a status it may be entered from
    (vocabulary.operations.ENTERED_FROM): a late or repeated step never moves it back.

    The row lock of the UPDATE orders concurrent writers and its condition is re-checked on the
    locked row, so no separate SELECT ... FOR UPDATE is needed."""
    entered_from = sorted(status.value for status in ENTERED_FROM[step.status])
    # A deployment that has ended has no lease left: cleared with the status move, so no reader
    # sees it ended and still expiring.
    ended = {"expires_at": None} if step.status in TERMINAL_STATUSES else {}
    # A run that succeeded applied this configuration (a change's new values).
    applied = {} if step.configuration is None else {"configuration": step.configuration}
    return (
        update(Deployment)
        .where(Deployment.id == step.deployment_id, Deployment.status.in_(entered_from))
        .values(
            status=step.status.value,
            attempt=step.attempt,
            retained_until=step.retained_until,
            updated_at=func.now(),
            **ended,
            **applied,
        )
        .returning(Deployment.id)
    )


async def record_step(session: AsyncSession, step: RecordStepInput) -> bool:
    """A step's history row, once per event key, and, only if that row is new, its status move
    (and its disks' state and sizes). True when the row was new. One statement."""
    history = _new_history(step).cte("step")
    moved = _move(step).where(exists(select(history.c.id))).cte("moved")
    stmt = select(select(history.c.id).scalar_subquery()).add_cte(moved)
    if step.disk_state is not None or step.disk_sizes:
        # One UPDATE for both (a statement may change a row only once): the state moves every
        # disk; given sizes, each disk takes its own from the list, matched by mount point.
        disks = update(DiskAllocation).where(
            DiskAllocation.deployment_id == step.deployment_id,
            exists(select(moved.c.id)),
        )
        if step.disk_state is not None:
            disks = disks.values(state=step.disk_state.value, state_changed_at=func.now())
        if step.disk_sizes:
            sizes = values(
                column("mount_point", String), column("size_gb", Integer), name="sizes"
            ).data([(disk.mount_point, disk.size_gb) for disk in step.disk_sizes])
            disks = disks.where(DiskAllocation.mount_point == sizes.c.mount_point).values(
                size_gb=sizes.c.size_gb
            )
        stmt = stmt.add_cte(disks.cte("disks"))
    return (await (await session.connection()).execute(stmt)).scalar() is not None


async def record_lease(session: AsyncSession, lease: RecordLeaseInput) -> None:
    """The deployment's expiry and, when given, the history row saying why. The expiry moves
    without a status move, so it has an UPDATE of its own; a repeated call writes the same."""
    if lease.step is not None:
        await record_step(session, lease.step)
    await (await session.connection()).execute(
        update(Deployment)
        .where(Deployment.id == lease.deployment_id)
        .values(expires_at=lease.expires_at, updated_at=func.now())
    )


async def record_approval(session: AsyncSession, data: RecordApprovalInput) -> None:
    """The deployment's approval (and its plan, when given) and the step it makes, in the
    caller's transaction; a repeated call writes the same."""
    await record_step(session, data.step)
    approval = data.approval
    plan = {} if data.plan is None else {"plan": data.plan}
    await (await session.connection()).execute(
        update(Deployment)
        .where(Deployment.id == data.deployment_id)
        .values(
            approval_state=approval.state.value,
            approval_by=approval.by,
            approval_at=approval.at,
            approval_comment=approval.comment,
            updated_at=func.now(),
            **plan,
        )
    )


async def next_deployment_id(session: AsyncSession) -> int:
    """A fresh deployment id from the table's sequence: the launch names its workflow's
    deployment before any row exists."""
    stmt = select(func.nextval(func.pg_get_serial_sequence("deployments", "id")))
    return int((await (await session.connection()).execute(stmt)).scalar_one())


async def deployment_name_taken(session: AsyncSession, user_id: int, name: str) -> bool:
    stmt = select(exists().where(Deployment.user_id == user_id, Deployment.deployment_name == name))
    return bool((await (await session.connection()).execute(stmt)).scalar())
