"""Operations on a deployment (cancel, destroy, retry): sent to its workflow as Updates.

The workflow is the authority on what its state allows: its update validators refuse an
operation before it reaches history, and the refusal's reason becomes the 409. The API checks
only what the workflow cannot answer any more: a deployment whose workflow has ended (cancelled,
destroyed, rejected) is refused from the database.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Conflict, NotFound, TemporalUnavailable
from db.deployment_reads import deployment_detail
from db.models import User
from vocabulary.contracts import OperationRequest
from vocabulary.errors import OPERATION_REFUSED
from vocabulary.operations import Operation, refusal
from vocabulary.statuses import DeploymentStatus
from workflows.deploy import DeployWorkflow

UPDATES: dict[Operation, Any] = {
    Operation.CANCEL: DeployWorkflow.cancel,
    Operation.DESTROY: DeployWorkflow.destroy,
    Operation.RETRY: DeployWorkflow.retry,
}
# The update returns once the operation's first step is recorded: seconds, not the operation.
UPDATE_RPC_TIMEOUT = timedelta(seconds=30)


def update_id(operation: Operation, user: User, idempotency_key: str | None) -> str | None:
    """Temporal runs an update of a given id once: the same key repeats nothing."""
    if idempotency_key is None:
        return None
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"{operation.value}-u{user.id}-{digest}"


async def operate(
    session: AsyncSession,
    temporal: Client,
    user: User,
    deployment_id: int,
    operation: Operation,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """Start `operation` on the deployment; its detail as it now stands."""
    row = await deployment_detail(session, user, deployment_id)
    if row is None:
        raise NotFound("deployment not found")
    status = DeploymentStatus(row["status"])
    if status.is_terminal:
        raise Conflict(refusal(operation, status) or f"the deployment is {status.value}")
    handle = temporal.get_workflow_handle(row["workflow_id"])
    try:
        await handle.execute_update(
            UPDATES[operation],
            OperationRequest(requested_by=user.username),
            id=update_id(operation, user, idempotency_key),
            rpc_timeout=UPDATE_RPC_TIMEOUT,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
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
    return refreshed
