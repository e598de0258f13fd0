"""Database steps of DeployWorkflow: one transaction each, safe to run twice."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import DUPLICATE_NAME, VALIDATION_FAILED
from db.models import Deployment, DiskAllocation
from db.repository import (
    DuplicateDeploymentName,
    insert_deployment,
    insert_disks,
    load_template_snapshot,
    record_step,
)
from db.session import SessionMaker, create_autocommit_sessionmaker
from domain.validation import DeploymentValidationError, validate_deployment
from workflows.contracts import (
    CloneDisksInput,
    CreateDeploymentInput,
    DeployRequest,
    RecordStepInput,
    RecordTriggeredInput,
    RejectDeploymentInput,
    ValidatedDeployment,
)


class DeploymentActivities:
    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sessionmaker = sessionmaker
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
    async def create_deployment(self, data: CreateDeploymentInput) -> int:
        """Insert the deployment (status pending) and its `created` row; keyed by workflow id.

        Usually the API has written both already and this finds them.
        """
        async with self._sessionmaker.begin() as session:
            try:
                new = await insert_deployment(
                    session,
                    workflow_id=data.workflow_id,
                    user_id=data.user_id,
                    deployment_name=data.deployment_name,
                    deployment=data.deployment,
                )
            except DuplicateDeploymentName as exc:
                raise ApplicationError(str(exc), type=DUPLICATE_NAME, non_retryable=True) from None
            if new is not None:
                activity.logger.info(
                    "deployment created",
                    extra={"deployment_id": new.id, "workflow_id": data.workflow_id},
                )
                return new.id
            deployment_id = await session.scalar(
                select(Deployment.id).where(Deployment.workflow_id == data.workflow_id)
            )
            assert deployment_id is not None
            return deployment_id

    @activity.defn
    async def reject_deployment(self, data: RejectDeploymentInput) -> None:
        """End a deployment the API recorded but the workflow's validation refused."""
        async with self._sessionmaker.begin() as session:
            deployment_id = await session.scalar(
                select(Deployment.id).where(Deployment.workflow_id == data.workflow_id)
            )
            if deployment_id is not None:
                await record_step(
                    session,
                    deployment_id,
                    "result",
                    "failed",
                    data.message,
                    {"errors": data.errors},
                )

    @activity.defn
    async def clone_disk_allocations(self, data: CloneDisksInput) -> None:
        """Record the disks step; copy the validated disks unless the create step did.

        Runs started by an older API create the row without its disks, so they are cloned here.
        """
        async with self._sessionmaker.begin() as session:
            disks = [f"{d.mount_point} {d.size_gb}G" for d in data.disks]
            message = f"{len(disks)} disk allocation(s) cloned from the template"
            if not await record_step(
                session,
                data.deployment_id,
                "disks_allocated",
                "provisioning",
                message,
                {"disks": disks},
            ):
                return
            cloned = await session.scalar(
                select(DiskAllocation.id)
                .where(DiskAllocation.deployment_id == data.deployment_id)
                .limit(1)
            )
            if cloned is None:
                await insert_disks(session, data.deployment_id, data.disks)

    @activity.defn
    async def record_pipeline_triggered(self, data: RecordTriggeredInput) -> None:
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(Deployment)
                .where(Deployment.id == data.deployment_id)
                .values(jenkins_job_id=data.run.job_id)
            )
            await record_step(
                session,
                data.deployment_id,
                "triggered",
                "queued",
                f"Pipeline triggered ({data.run.job_id})",
                dataclasses.asdict(data.run),
            )

    @activity.defn
    async def record_pipeline_run(self, data: RecordTriggeredInput) -> None:
        """The run's new reference (a Jenkins queue item became build N)."""
        async with self._one_statement() as session:
            await session.execute(
                update(Deployment)
                .where(Deployment.id == data.deployment_id)
                .values(jenkins_job_id=data.run.job_id, updated_at=func.now())
            )

    @activity.defn
    async def record_step(self, data: RecordStepInput) -> None:
        async with self._one_statement() as session:
            await record_step(
                session, data.deployment_id, data.event_key, data.status, data.message, data.details
            )
