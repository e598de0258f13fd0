"""Starting a deployment: validate against the template, record the deployment, start
DeployWorkflow, and answer with the deployment in the same request.

The row and the start share one transaction, held across `start_workflow`: a committed row
always has its workflow, and if the API dies after the start the workflow's own (idempotent)
create step writes the row. The workflow validates again: it is the authority.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.errors import Conflict, TemporalUnavailable, ValidationFailed
from api.schemas import DeploymentCreate
from db.deployment_reads import deployment_detail
from db.models import User
from db.repository import (
    DuplicateDeploymentName,
    find_deployment_by_workflow,
    insert_deployment,
    load_template_snapshot,
)
from domain.validation import DeploymentValidationError, validate_deployment
from settings import Settings
from vocabulary.contracts import DeployRequest, ValidatedDeployment
from vocabulary.disks import DiskOverride, DiskState
from vocabulary.statuses import DeploymentStatus
from workflows import search_attributes as sa
from workflows.deploy import DeployWorkflow


def workflow_id_for(user: User, idempotency_key: str | None) -> str:
    """The same key from the same user always names the same workflow (and so deployment)."""
    if idempotency_key is None:
        return f"deployment-{uuid.uuid4()}"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"deployment-u{user.id}-{digest}"


@dataclasses.dataclass
class _Ask:
    deployment_name: str
    configuration: dict[str, Any]
    disk_overrides: list[DiskOverride]


def _ask(body: DeploymentCreate) -> _Ask:
    overrides = [DiskOverride(**d.model_dump()) for d in body.disk_allocations]
    return _Ask(body.deployment_name, dict(body.configuration), overrides)


def _request(
    deployment_id: int, body: DeploymentCreate, user: User, settings: Settings
) -> DeployRequest:
    return DeployRequest(
        deployment_id=deployment_id,
        user_id=user.id,
        username=user.username,
        template_id=body.template_id,
        deployment_name=body.deployment_name,
        configuration=dict(body.configuration),
        disk_overrides=[DiskOverride(**d.model_dump()) for d in body.disk_allocations],
        default_callback_timeout_s=settings.default_callback_timeout_s,
        poll_interval_s=settings.pipeline_poll_interval_s,
        default_failure_retention_s=settings.default_failure_retention_s,
        max_history_events=settings.workflow_max_history_events,
    )


async def launch_deployment(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    user: User,
    body: DeploymentCreate,
    idempotency_key: str | None,
) -> dict[str, Any]:
    """The detail row of the deployment this request created (or created before, same key)."""
    workflow_id = workflow_id_for(user, idempotency_key)
    if idempotency_key is not None:  # a fresh uuid names no earlier deployment
        existing = await _existing(session, workflow_id, body)
        if existing is not None:
            return await _detail_of(session, user, existing)

    try:
        deployment = validate_deployment(
            await load_template_snapshot(session, body.template_id), _ask(body)
        )
    except DeploymentValidationError as exc:
        raise ValidationFailed(exc.errors) from None
    try:
        new = await insert_deployment(
            session,
            workflow_id=workflow_id,
            user_id=user.id,
            deployment_name=body.deployment_name,
            deployment=deployment,
        )
    except DuplicateDeploymentName as exc:
        raise Conflict(str(exc)) from None
    if new is None:  # the same key, sent twice at once: the other request won
        return await _earlier(session, user, workflow_id, body)
    try:
        await temporal.start_workflow(
            DeployWorkflow.run,
            _request(new.id, body, user, settings),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            # Running: an earlier attempt with this key started it and then lost its row.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=_search_attributes(user, new.id, deployment),
        )
    except RPCError as exc:
        # The transaction rolls back with the request: nothing half-made is left.
        raise TemporalUnavailable(
            f"the workflow service is unavailable, nothing was created: {exc.message}"
        ) from None
    except WorkflowAlreadyStartedError:
        # That earlier run is over: its deployment is the answer, if it recorded one.
        await session.rollback()
        await session.refresh(user)  # the rollback expired it; the response still reads it
        return await _earlier(session, user, workflow_id, body)
    await session.commit()
    # Everything the detail view shows is in hand: no need to read it back.
    return {
        "id": new.id,
        "deployment_name": body.deployment_name,
        "status": DeploymentStatus.PENDING,
        "template_id": deployment.template_id,
        "template_name": deployment.template_name,
        "user_id": user.id,
        "username": user.username,
        "workflow_id": workflow_id,
        "created_at": new.created_at,
        "updated_at": new.updated_at,
        "service_type": deployment.service_type,
        "template_version": deployment.template_version,
        "configuration": deployment.configuration,
        "jenkins_job_id": None,
        "attempt": 1,
        "retained_until": None,
        "disk_allocations": [
            {
                **dataclasses.asdict(disk),
                "state": DiskState.PLANNED,
                "state_changed_at": new.created_at,
            }
            for disk in deployment.disks
        ],
    }


async def _detail_of(session: AsyncSession, user: User, deployment_id: int) -> dict[str, Any]:
    row = await deployment_detail(session, user, deployment_id)
    assert row is not None  # the caller's own deployment, just found
    return row


def _search_attributes(
    user: User, deployment_id: int, deployment: ValidatedDeployment
) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.OWNER, user.username),
            SearchAttributePair(sa.DEPLOYMENT_STATUS, DeploymentStatus.PENDING.value),
            SearchAttributePair(sa.DEPLOYMENT_ID, deployment_id),
            SearchAttributePair(sa.TEMPLATE_NAME, deployment.template_name),
            SearchAttributePair(sa.SERVICE_TYPE, deployment.service_type),
        ]
    )


async def _existing(session: AsyncSession, workflow_id: str, body: DeploymentCreate) -> int | None:
    """The deployment an earlier request with this key created; 409 if it asked for another."""
    row = await find_deployment_by_workflow(session, workflow_id)
    if row is None:
        return None
    deployment_id, name, template_id = row
    if (name, template_id) != (body.deployment_name, body.template_id):
        raise Conflict(
            "this Idempotency-Key was used for another deployment "
            f"({name!r}, template {template_id})"
        )
    return deployment_id


async def _earlier(
    session: AsyncSession, user: User, workflow_id: str, body: DeploymentCreate
) -> dict[str, Any]:
    """The detail of what an earlier request with this key created; 409 if it created none."""
    existing = await _existing(session, workflow_id, body)
    if existing is None:
        raise Conflict("this Idempotency-Key was used for a request that failed; use a new key")
    return await _detail_of(session, user, existing)
