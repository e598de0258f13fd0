"""Approving or rejecting a deployment that waits for approval: sent to its workflow as the
`approve` or `reject` Update, like the operations.

Admins only (the route says so); the requester may not decide on their own deployment (403,
asked here and again by the workflow's validator, which also refuses a deployment not awaiting
approval, or whose plan is not made yet: 409). A second decision finds the status moved: 409. A
plan whose template version was deactivated or superseded since is stale: approving it is a 409
(rejecting it is not), and the requester launches again from the current version.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Conflict, Forbidden, NotFound, TemporalUnavailable
from api.operations import UPDATE_RPC_TIMEOUT
from db.deployment_reads import deployment_detail
from db.models import Deployment, Template, User
from vocabulary.approvals import ApprovalRequest, ApprovalState
from vocabulary.errors import APPROVAL_FORBIDDEN, OPERATION_REFUSED
from vocabulary.statuses import DeploymentStatus
from workflows.deploy import DeployWorkflow

DECISIONS = {
    ApprovalState.APPROVED: DeployWorkflow.approve,
    ApprovalState.REJECTED: DeployWorkflow.reject,
}
# The approvals page shows at most this many, oldest first.
MAX_WAITING = 100


def _update_id(decision: ApprovalState, user: User, idempotency_key: str | None) -> str | None:
    """Temporal runs an update of a given id once: the same key decides once."""
    if idempotency_key is None:
        return None
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"{decision.value}-u{user.id}-{digest}"


async def decide(
    session: AsyncSession,
    temporal: Client,
    user: User,
    deployment_id: int,
    decision: ApprovalState,
    comment: str | None,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Approve or reject; the deployment's detail before and as it now stands."""
    row = await deployment_detail(session, user, deployment_id)
    if row is None:
        raise NotFound("deployment not found")
    if row["user_id"] == user.id:
        raise Forbidden("the requester cannot approve or reject their own deployment")
    status = DeploymentStatus(row["status"])
    if status.is_terminal:
        raise Conflict(
            f"the deployment is {status.value.replace('_', ' ')}: only a deployment awaiting "
            "approval can be approved or rejected"
        )
    if decision == ApprovalState.APPROVED:
        if stale := await _stale(session, row["template_id"]):
            raise Conflict(f"the plan is stale: {stale}; reject it, and launch again")
    handle = temporal.get_workflow_handle(row["workflow_id"])
    try:
        await handle.execute_update(
            DECISIONS[decision],
            ApprovalRequest(user.id, user.username, comment),
            id=_update_id(decision, user, idempotency_key),
            rpc_timeout=UPDATE_RPC_TIMEOUT,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == APPROVAL_FORBIDDEN:
            raise Forbidden(cause.message) from None
        if isinstance(cause, ApplicationError) and cause.type == OPERATION_REFUSED:
            raise Conflict(cause.message) from None
        raise
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the workflow ended meanwhile
            raise Conflict(f"the deployment's workflow has ended: {exc.message}") from None
        raise TemporalUnavailable(
            f"the workflow service did not answer; retry with the same Idempotency-Key: "
            f"{exc.message}"
        ) from None
    refreshed = await deployment_detail(session, user, deployment_id)
    assert refreshed is not None
    return row, refreshed


async def _stale(session: AsyncSession, template_id: int) -> str | None:
    """Why a plan of this template version no longer stands: the version was deactivated, or
    a newer one published, since (a template is never edited in place: a change is a version)."""
    template = await session.get(Template, template_id)
    if template is None or not template.is_active:
        return "its template was deactivated since"
    newest = await session.scalar(
        select(func.max(Template.version)).where(Template.name == template.name, Template.is_active)
    )
    if newest is not None and newest > template.version:
        return (
            f"template {template.name} has version {newest} since (the plan builds version "
            f"{template.version})"
        )
    return None


async def waiting_for_approval(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    """What waits for a decision, oldest first, each with its plan."""
    ids = await session.scalars(
        select(Deployment.id)
        .where(Deployment.status == DeploymentStatus.AWAITING_APPROVAL.value)
        .order_by(Deployment.created_at, Deployment.id)
        .limit(MAX_WAITING)
    )
    details = [await deployment_detail(session, user, deployment_id) for deployment_id in ids]
    return [detail for detail in details if detail is not None]
