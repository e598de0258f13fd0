"""Starting a deployment: validate against the template, record the deployment, start
DeployWorkflow, and answer with the deployment in the same request.

The row and the start share one transaction, held across `start_workflow`: a committed row
always has its workflow, and if the API dies after the start the workflow's own (idempotent)
create step writes the row. The workflow validates again: it is the authority.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.errors import Conflict, ValidationFailed
from api.schemas import DeploymentCreate
from db.models import Deployment, User
from db.repository import DuplicateDeploymentName, insert_deployment, load_template_snapshot
from domain.validation import DeploymentValidationError, validate_deployment
from settings import Settings
from workflows import search_attributes as sa
from workflows.contracts import DeployRequest, DiskOverride, ValidatedDeployment
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
    existing = await _existing(session, workflow_id, body)
    if existing is not None:
        return existing

    request = _request(body, user, settings)
    try:
        deployment = validate_deployment(
            await load_template_snapshot(session, body.template_id), request
        )
    except DeploymentValidationError as exc:
        raise ValidationFailed(exc.errors) from None
    try:
        deployment_id = await insert_deployment(
            session,
            workflow_id=workflow_id,
            user_id=user.id,
            deployment_name=body.deployment_name,
            deployment=deployment,
        )
    except DuplicateDeploymentName as exc:
        raise Conflict(str(exc)) from None
    if deployment_id is None:  # the same key, sent twice at once: the other request won
        return await _existing_or_conflict(session, workflow_id, body)
    request.deployment_id = deployment_id
    try:
        await temporal.start_workflow(
            DeployWorkflow.run,
            request,
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            # Running: an earlier attempt with this key started it and then lost its row.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=_search_attributes(user, deployment_id, deployment),
        )
    except WorkflowAlreadyStartedError:
        # That earlier run is over: its deployment is the answer, if it recorded one.
        await session.rollback()
        await session.refresh(user)  # the rollback expired it; the response still reads it
        return await _existing_or_conflict(session, workflow_id, body)
    await session.commit()
    return deployment_id


def _search_attributes(
    user: User, deployment_id: int, deployment: ValidatedDeployment
) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.OWNER, user.username),
            SearchAttributePair(sa.DEPLOYMENT_STATUS, "pending"),
            SearchAttributePair(sa.DEPLOYMENT_ID, deployment_id),
            SearchAttributePair(sa.TEMPLATE_NAME, deployment.template_name),
            SearchAttributePair(sa.SERVICE_TYPE, deployment.service_type),
        ]
    )


async def _existing(session: AsyncSession, workflow_id: str, body: DeploymentCreate) -> int | None:
    """The deployment an earlier request with this key created; 409 if it asked for another."""
    row = (
        await session.execute(
            select(Deployment.id, Deployment.deployment_name, Deployment.template_id).where(
                Deployment.workflow_id == workflow_id
            )
        )
    ).one_or_none()
    if row is None:
        return None
    if (row.deployment_name, row.template_id) != (body.deployment_name, body.template_id):
        raise Conflict(
            "this Idempotency-Key was used for another deployment "
            f"({row.deployment_name!r}, template {row.template_id})"
        )
    return int(row.id)


async def _existing_or_conflict(
    session: AsyncSession, workflow_id: str, body: DeploymentCreate
) -> int:
    existing = await _existing(session, workflow_id, body)
    if existing is None:
        raise Conflict("this Idempotency-Key was used for a request that failed; use a new key")
    return existing
