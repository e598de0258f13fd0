"""Starting a deployment: validate against the template, then update-with-start DeployWorkflow
and answer with the deployment's id (or the workflow's refusal) in the same request."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import ApplicationError

from activities.errors import DUPLICATE_NAME, VALIDATION_FAILED
from api.errors import Conflict, ValidationFailed
from api.schemas import DeploymentCreate
from db.models import Deployment, User
from db.repository import load_template_snapshot
from domain.validation import DeploymentValidationError, validate_deployment
from settings import Settings
from workflows import search_attributes as sa
from workflows.contracts import DeployRequest, DiskOverride
from workflows.deploy import DeployWorkflow


def workflow_id_for(user: User, idempotency_key: str | None) -> str:
    """The same key from the same user always names the same workflow (and so deployment)."""
    if idempotency_key is None:
        return f"deployment-{uuid.uuid4()}"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"deployment-u{user.id}-{digest}"


def _request(body: DeploymentCreate, user: User, settings: Settings) -> DeployRequest:
    return DeployRequest(
        user_id=user.id,
        username=user.username,
        template_id=body.template_id,
        deployment_name=body.deployment_name,
        configuration=dict(body.configuration),
        disk_overrides=[DiskOverride(**d.model_dump()) for d in body.disk_allocations],
        default_callback_timeout_s=settings.default_callback_timeout_s,
        poll_interval_s=settings.pipeline_poll_interval_s,
    )


async def launch_deployment(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    user: User,
    body: DeploymentCreate,
    idempotency_key: str | None,
) -> int:
    """Return the id of the deployment this request created (or created before, same key)."""
    workflow_id = workflow_id_for(user, idempotency_key)
    existing = await session.scalar(
        select(Deployment.id).where(Deployment.workflow_id == workflow_id)
    )
    if existing is not None:
        return existing

    request = _request(body, user, settings)
    # Checked here first so that bad input starts nothing; the workflow checks again.
    try:
        validate_deployment(await load_template_snapshot(session, body.template_id), request)
    except DeploymentValidationError as exc:
        raise ValidationFailed(exc.errors) from None
    if await session.scalar(
        select(Deployment.id).where(
            Deployment.user_id == user.id, Deployment.deployment_name == body.deployment_name
        )
    ):
        raise Conflict(f"a deployment named {body.deployment_name!r} already exists")
    # Release the read transaction: the workflow's own transactions must not wait on it.
    await session.commit()

    start = WithStartWorkflowOperation(
        DeployWorkflow.run,
        request,
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.OWNER, user.username),
                SearchAttributePair(sa.DEPLOYMENT_STATUS, "pending"),
            ]
        ),
    )
    try:
        created = await temporal.execute_update_with_start_workflow(
            DeployWorkflow.deployment_created, start_workflow_operation=start
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == VALIDATION_FAILED:
            raise ValidationFailed(cause.details[0] if cause.details else cause.message) from None
        if isinstance(cause, ApplicationError) and cause.type == DUPLICATE_NAME:
            raise Conflict(cause.message) from None
        raise
    return created.deployment_id
