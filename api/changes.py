"""Changing a deployment (PATCH /api/deployments/{id}): growing its disks, setting its
configuration, or both at once; checked against its template, then sent to its workflow as the
`change` Update, like the operations, so one PATCH is one run of the playbook.

The API checks what needs the template (each size within its disk's bounds, the total within the
template's cap, each value within its overrides schema), grow-only against the disks it reads,
and, where the directory backend does not mount its images, that no xfs disk is to grow (xfs
grows only mounted); the workflow, which holds the disks, the values and the status, asks again
in its validator: a status other than `succeeded` is a 409, a shrink or a change that changes
nothing a 422, before anything reaches history.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Conflict, NotFound, TemporalUnavailable, ValidationFailed
from api.operations import UPDATE_RPC_TIMEOUT
from api.quotas import reserve_resize, resize_settled
from api.schemas import DeploymentChange
from db.deployment_reads import deployment_detail
from db.models import User
from db.repository import load_template_snapshot
from domain.validation import (
    DeploymentValidationError,
    unmounted_xfs_errors,
    validate_configuration_change,
    validate_resize,
)
from settings import Settings
from vocabulary.contracts import ChangeRequest
from vocabulary.disks import DISK_FIELDS, DiskResize, DiskSpec
from vocabulary.errors import CHANGE_REFUSED, OPERATION_REFUSED
from vocabulary.operations import change_refusal
from vocabulary.statuses import DeploymentStatus
from workflows.deploy import DeployWorkflow


def _update_id(user: User, idempotency_key: str | None) -> str | None:
    """Temporal runs an update of a given id once: the same key changes once."""
    if idempotency_key is None:
        return None
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"change-u{user.id}-{digest}"


async def checked_change(
    session: AsyncSession,
    settings: Settings,
    user: User,
    deployment_id: int,
    body: DeploymentChange,
) -> tuple[dict[str, Any], list[DiskResize]]:
    """The deployment's detail and the disks asked, once the change passed every check that
    needs no workflow: 404, 409 for an ended one, 422 naming each refused size or value."""
    row = await deployment_detail(session, user, deployment_id)
    if row is None:
        raise NotFound("deployment not found")
    status = DeploymentStatus(row["status"])
    if status.is_terminal:  # its workflow has ended
        raise Conflict(change_refusal(status) or f"the deployment is {status.value}")
    asked = [DiskResize(disk.mount_point, disk.size_gb) for disk in body.disk_allocations]
    disks = [
        DiskSpec(**{name: disk[name] for name in DISK_FIELDS}) for disk in row["disk_allocations"]
    ]
    template = await load_template_snapshot(session, row["template_id"])
    errors = []
    try:
        if asked:
            validate_resize(template, disks, asked)
    except DeploymentValidationError as invalid:
        errors += invalid.errors
    try:
        validate_configuration_change(template, body.configuration)
    except DeploymentValidationError as invalid:
        errors += invalid.errors
    if settings.disk_backend == "directory" and not settings.directory_mount and not errors:
        errors += unmounted_xfs_errors(disks, asked)
    if errors:
        raise ValidationFailed(errors)
    return row, asked


async def change_deployment(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    user: User,
    deployment_id: int,
    body: DeploymentChange,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """Grow the deployment's disks and set its values; its detail as it now stands
    (`updating`)."""
    row, asked = await checked_change(session, settings, user, deployment_id, body)
    reservation = None
    if asked:
        # The owner's quota, whoever asks: checked and the sizes reserved under their row lock,
        # committed before the workflow is asked (nothing is held meanwhile); 422 sends nothing.
        reservation = await reserve_resize(
            session,
            settings,
            owner_id=row["user_id"],
            deployment_id=deployment_id,
            workflow_id=row["workflow_id"],
            asked=asked,
        )
        await session.commit()
    handle = temporal.get_workflow_handle(row["workflow_id"])
    try:
        await handle.execute_update(
            DeployWorkflow.change,
            ChangeRequest(user.username, asked, dict(body.configuration)),
            id=_update_id(user, idempotency_key),
            rpc_timeout=UPDATE_RPC_TIMEOUT,
        )
    except WorkflowUpdateFailedError as exc:
        if reservation is not None:  # refused: it grows nothing
            await resize_settled(session, reservation)
            await session.commit()
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == OPERATION_REFUSED:
            raise Conflict(cause.message) from None
        if isinstance(cause, ApplicationError) and cause.type == CHANGE_REFUSED:
            # Nothing changes, or the disks changed since the read above: the workflow's word.
            raise ValidationFailed(cause.details[0] if cause.details else cause.message) from None
        raise
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the workflow ended meanwhile
            if reservation is not None:
                await resize_settled(session, reservation)
                await session.commit()
            raise Conflict(f"the deployment's workflow has ended: {exc.message}") from None
        # Unknown whether the change landed: the reservation holds the sizes until it expires.
        raise TemporalUnavailable(
            f"the workflow service did not answer; retry with the same Idempotency-Key: "
            f"{exc.message}"
        ) from None
    if reservation is not None:  # accepted: its `change-requested` history row holds the sizes
        await resize_settled(session, reservation)
        await session.commit()
    refreshed = await deployment_detail(session, user, deployment_id)
    assert refreshed is not None
    return refreshed
