"""Starting a deployment: validate against the template, start DeployWorkflow, record the
deployment, and answer with it in the same request.

No transaction is held across the call to the workflow service. The API draws the deployment's
id first, starts the workflow with it (bounded by `temporal_rpc_timeout_s`), then writes the row.
The workflow's own first step writes the same row under the same id if the API never does (it
died, or the start's answer was lost), so a started workflow always has its deployment, and a
workflow that never started leaves nothing behind. When the service does not answer, the
outcome is unknown and the answer says so: retrying with the same Idempotency-Key is safe,
because the key names the workflow, and a second start of a running one adopts it.
The workflow validates again: it is the authority.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from datetime import timedelta
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
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Conflict, TemporalUnavailable, ValidationFailed
from api.quotas import launch_abandoned, launch_recorded, reserve_launch
from api.schemas import DeploymentCreate
from db.deployment_reads import deployment_detail
from db.models import User
from db.repository import (
    DuplicateDeploymentName,
    deployment_name_taken,
    find_deployment_by_workflow,
    insert_deployment,
    load_template_snapshot,
    next_deployment_id,
)
from domain.validation import DeploymentValidationError, validate_deployment
from settings import Settings
from vocabulary.contracts import DeployRequest, ValidatedDeployment
from vocabulary.disks import DiskOverride, DiskState
from vocabulary.statuses import DeploymentStatus
from workflows import search_attributes as sa
from workflows.deploy import DeployWorkflow

# How long a launch that meets its key's running workflow waits for that workflow's row.
ADOPT_WAIT_S = 5.0


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
        host_answer_timeout_s=settings.host_answer_timeout_s,
        lease_destroy_retry_s=settings.lease_destroy_retry_s,
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
    if await deployment_name_taken(session, user.id, body.deployment_name):
        raise Conflict(f"a deployment named {body.deployment_name!r} already exists")
    deployment_id = await next_deployment_id(session)
    # Under the user's row lock: the quota checked, and this deployment reserved until its row
    # exists (api/quotas.py). 422 quota_exceeded with nothing written.
    reservation = await reserve_launch(
        session,
        settings,
        user,
        deployment_id=deployment_id,
        workflow_id=workflow_id,
        disks=deployment.disks,
    )
    await session.commit()  # nothing is held while the workflow service is asked

    try:
        await temporal.start_workflow(
            DeployWorkflow.run,
            _request(deployment_id, body, user, settings),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            # A concurrent or earlier request with this key started it: adopt that one.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=_search_attributes(user, deployment_id, deployment),
            rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_s),
        )
    except WorkflowAlreadyStartedError:
        await launch_abandoned(session, reservation)  # that workflow's request reserved its own
        return await _adopt(session, temporal, settings, user, workflow_id, body)
    except RPCError as exc:
        if exc.status not in _OUTCOME_UNKNOWN:  # refused: nothing started, nothing held
            await launch_abandoned(session, reservation)
        # Unknown: the workflow may still record its row; the reservation holds the quota
        # until it does, or expires.
        raise _start_not_confirmed(exc, deployment_id, idempotency_key) from None

    try:
        new = await insert_deployment(
            session,
            deployment_id=deployment_id,
            workflow_id=workflow_id,
            user_id=user.id,
            deployment_name=body.deployment_name,
            deployment=deployment,
        )
    except DuplicateDeploymentName as exc:
        # A launch of the same name won the race since the check: this workflow's own
        # record step meets the same refusal and ends it with nothing built.
        await session.rollback()
        await launch_abandoned(session, reservation)
        raise Conflict(str(exc)) from None
    await launch_recorded(session, workflow_id)  # the row counts itself now
    await session.commit()
    if new is None:  # the workflow's first step was quicker and wrote the row itself
        return await _detail_of(session, user, deployment_id)
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


# Errors after which the service may still have started the workflow.
_OUTCOME_UNKNOWN = frozenset(
    {
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.INTERNAL,
    }
)


def _start_not_confirmed(
    exc: RPCError, deployment_id: int, idempotency_key: str | None
) -> TemporalUnavailable:
    if exc.status not in _OUTCOME_UNKNOWN:
        return TemporalUnavailable(
            f"the workflow service refused the start, nothing was created: {exc.message}"
        )
    retry = (
        "Retrying with the same Idempotency-Key is safe: it answers with this deployment "
        "if it started, and starts it once if not."
        if idempotency_key is not None
        else f"If it started, it appears as deployment {deployment_id} within moments; "
        "send an Idempotency-Key to make such retries safe."
    )
    return TemporalUnavailable(
        f"the workflow service did not confirm the start ({exc.message}); whether the "
        f"deployment started is unknown. {retry}"
    )


async def _adopt(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    user: User,
    workflow_id: str,
    body: DeploymentCreate,
) -> dict[str, Any]:
    """The key's workflow exists already (a concurrent request, or an earlier one whose answer
    was lost): answer with its deployment, which its own first step records if no request did.
    The API writes nothing here: that workflow runs with its own request, not this one."""
    deadline = asyncio.get_running_loop().time() + ADOPT_WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        if await find_deployment_by_workflow(session, workflow_id) is not None:
            return await _earlier(session, user, workflow_id, body)
        await session.commit()  # end the read (nothing written): hold nothing while waiting
        await asyncio.sleep(0.2)
    try:
        description = await temporal.get_workflow_handle(workflow_id).describe(
            rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_s)
        )
    except RPCError as exc:
        raise TemporalUnavailable(
            f"the workflow service did not answer ({exc.message}); retry with the same "
            "Idempotency-Key"
        ) from None
    if description.close_time is not None:  # over, and it never recorded a deployment
        return await _earlier(session, user, workflow_id, body)
    raise TemporalUnavailable(
        "the deployment this Idempotency-Key started is not recorded yet (no worker has run "
        "its first step); retry with the same key"
    )


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
