"""Database steps of DeployWorkflow: one transaction each, safe to run twice."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.repository import (
    DuplicateDeploymentName,
    deployment_exists,
    insert_deployment,
    load_template_snapshot,
    record_approval,
    record_lease,
    record_run,
    record_step,
)
from db.session import SessionMaker, create_autocommit_sessionmaker
from db.webhook_reads import owner_has_webhook
from domain.validation import DeploymentValidationError, validate_deployment
from vocabulary.activities import DeploymentSteps
from vocabulary.contracts import (
    DeployRequest,
    DisksAllocatedInput,
    RecordApprovalInput,
    RecordDeploymentInput,
    RecordLeaseInput,
    RecordRunInput,
    RecordStepInput,
    RejectDeploymentInput,
    ValidatedDeployment,
)
from vocabulary.errors import DUPLICATE_NAME, VALIDATION_FAILED
from vocabulary.statuses import DeploymentStatus as S

# The API writes a deployment's row right after its start returns; the workflow's first steps
# (local activities) can come sooner. Waiting this long for the API's row, checked every
# RECORD_POLL_S, keeps the row the API's (its answer is then built from what it wrote) and this
# step a read, unless the API really did not write it.
API_RECORD_GRACE_S = 2.0
RECORD_POLL_S = 0.05


class DeploymentActivities(DeploymentSteps):
    def __init__(self, sessionmaker: SessionMaker, *, global_webhook: bool = False) -> None:
        self._sessionmaker = sessionmaker
        # PROVISIO_WEBHOOK_URL is set: every deployment's events have a receiver.
        self._global_webhook = global_webhook
        # For steps of one statement: it commits by itself, so BEGIN and COMMIT are saved.
        self._one_statement = create_autocommit_sessionmaker(sessionmaker.kw["bind"])

    @activity.defn
    async def validate_deployment(self, request: DeployRequest) -> ValidatedDeployment:
        async with self._one_statement() as session:
            template = await load_template_snapshot(session, request.template_id)
        try:
            return validate_deployment(template, request)
        except DeploymentValidationError as exc:
            raise ApplicationError(
                str(exc), exc.errors, type=VALIDATION_FAILED, non_retryable=True
            ) from None

    @activity.defn
    async def record_deployment(self, data: RecordDeploymentInput) -> None:
        """The API writes the deployment, its disks and its `created` row right after it starts
        this workflow; if it never does (it died, or the start's answer was lost on the way),
        write them now, under the id the API drew for it."""
        if await self._recorded_by_the_api(data.deployment_id):
            return
        async with self._one_statement() as session:
            try:
                new = await insert_deployment(
                    session,
                    deployment_id=data.deployment_id,
                    workflow_id=data.workflow_id,
                    user_id=data.user_id,
                    deployment_name=data.deployment_name,
                    deployment=data.deployment,
                )
            except DuplicateDeploymentName as exc:
                raise ApplicationError(str(exc), type=DUPLICATE_NAME, non_retryable=True) from None
        if new is not None:
            activity.logger.info(
                "deployment recorded by its workflow (the API did not write it)",
                extra={"deployment_id": data.deployment_id, "workflow_id": data.workflow_id},
            )

    async def _recorded_by_the_api(self, deployment_id: int) -> bool:
        deadline = time.monotonic() + API_RECORD_GRACE_S
        while True:
            async with self._one_statement() as session:
                if await deployment_exists(session, deployment_id):
                    return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(RECORD_POLL_S)

    @activity.defn
    async def reject_deployment(self, data: RejectDeploymentInput) -> None:
        """End a deployment the workflow's validation refused (if it was recorded at all)."""
        step = RecordStepInput(
            data.deployment_id, "result", S.FAILED, data.message, {"errors": data.errors}
        )
        async with self._sessionmaker.begin() as session:
            if await deployment_exists(session, data.deployment_id):
                await record_step(session, step)

    @activity.defn
    async def record_disks_allocated(self, data: DisksAllocatedInput) -> None:
        """The disks were copied from the template with the deployment; say so in history."""
        disks = [f"{d.mount_point} {d.size_gb}G" for d in data.disks]
        message = f"{len(disks)} disk allocation(s) cloned from the template"
        step = RecordStepInput(
            data.deployment_id, "disks_allocated", S.PROVISIONING, message, {"disks": disks}
        )
        async with self._one_statement() as session:
            await record_step(session, step)

    @activity.defn
    async def record_pipeline_triggered(self, data: RecordRunInput) -> bool:
        """The run's reference and, in the same transaction, its `triggered` step; whether
        someone listens to the step's event, as `record_step` says."""
        async with self._sessionmaker.begin() as session:
            await record_run(session, data.deployment_id, data.run)
            if data.step is None:
                return False
            await record_step(session, data.step)
            return await self._listening(session, data.step)

    @activity.defn
    async def record_pipeline_run(self, data: RecordRunInput) -> None:
        """The run's new reference (a Jenkins queue item became build N)."""
        async with self._one_statement() as session:
            await record_run(session, data.deployment_id, data.run)

    @activity.defn
    async def record_step(self, data: RecordStepInput) -> bool:
        async with self._one_statement() as session:
            await record_step(session, data)
            return await self._listening(session, data)

    async def _listening(self, session: AsyncSession, step: RecordStepInput) -> bool:
        """Only an event asks who listens, and only the owner's URL needs the database."""
        if step.notify is None:
            return False
        return self._global_webhook or await owner_has_webhook(session, step.deployment_id)

    @activity.defn
    async def record_lease(self, data: RecordLeaseInput) -> None:
        """The lease's new expiry and its history row, in one transaction."""
        async with self._sessionmaker.begin() as session:
            await record_lease(session, data)

    @activity.defn
    async def record_approval(self, data: RecordApprovalInput) -> bool:
        """The approval (and plan) with its step, in one transaction; whether someone listens
        to the step's event, as `record_step` says."""
        async with self._sessionmaker.begin() as session:
            await record_approval(session, data)
            return await self._listening(session, data.step)
