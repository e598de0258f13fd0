"""Extending a deployment's lease: sent to its workflow as an Update, like the operations.

The workflow holds the lease and is the authority on it: its validator refuses an extension the
deployment's status does not allow (409) or one past the template's `max_lease_s` (422 naming the
limit), before anything reaches history.
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
from api.schemas import LeaseExtension
from db.deployment_reads import deployment_detail
from db.models import User
from vocabulary.contracts import LeaseRequest
from vocabulary.errors import LEASE_REFUSED, OPERATION_REFUSED
from vocabulary.leases import extension_refusal
from vocabulary.statuses import DeploymentStatus
from workflows.deploy import DeployWorkflow


def _update_id(user: User, idempotency_key: str | None) -> str | None:
    """Temporal runs an update of a given id once: the same key extends once."""
    if idempotency_key is None:
        return None
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"lease-u{user.id}-{digest}"


async def extend_lease(
    session: AsyncSession,
    temporal: Client,
    user: User,
    deployment_id: int,
    body: LeaseExtension,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """Extend the deployment's lease; its detail as it now stands."""
    row = await deployment_detail(session, user, deployment_id)
    if row is None:
        raise NotFound("deployment not found")
    status = DeploymentStatus(row["status"])
    if status.is_terminal:  # its workflow has ended: nobody holds a lease any more
        raise Conflict(extension_refusal(status) or f"the deployment is {status.value}")
    request = LeaseRequest(
        requested_by=user.username, extend_s=body.extend_s, expires_at=body.expires_at
    )
    handle = temporal.get_workflow_handle(row["workflow_id"])
    try:
        await handle.execute_update(
            DeployWorkflow.extend_lease,
            request,
            id=_update_id(user, idempotency_key),
            rpc_timeout=UPDATE_RPC_TIMEOUT,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == OPERATION_REFUSED:
            raise Conflict(cause.message) from None
        if isinstance(cause, ApplicationError) and cause.type == LEASE_REFUSED:
            field = cause.details[0] if cause.details else "extend_s"
            raise ValidationFailed(
                [{"loc": ["body", field], "msg": cause.message, "type": "lease"}]
            ) from None
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
    return refreshed
