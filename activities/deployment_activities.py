"""Database steps of DeployWorkflow: one transaction each, safe to run twice."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import DUPLICATE_NAME, VALIDATION_FAILED
from db.models import Deployment, DiskAllocation
from db.repository import add_history, load_template_snapshot, record_step
from db.session import SessionMaker
from domain.validation import DeploymentValidationError, validate_deployment
from workflows.contracts import (
    CloneDisksInput,
    CreateDeploymentInput,
    DeployRequest,
    RecordStepInput,
    RecordTriggeredInput,
    ValidatedDeployment,
)


class DeploymentActivities:
    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sessionmaker = sessionmaker

    @activity.defn
    async def validate_deployment(self, request: DeployRequest) -> ValidatedDeployment:
        async with self._sessionmaker() as session:
            template = await load_template_snapshot(session, request.template_id)
        try:
            return validate_deployment(template, request)
        except DeploymentValidationError as exc:
            raise ApplicationError(
                str(exc), exc.errors, type=VALIDATION_FAILED, non_retryable=True
            ) from None

    @activity.defn
    async def create_deployment(self, data: CreateDeploymentInput) -> int:
        """Insert the deployment (status pending) and its `created` row; keyed by workflow id."""
        deployment = data.deployment
        async with self._sessionmaker.begin() as session:
            try:
                deployment_id = await session.scalar(
                    pg_insert(Deployment)
                    .values(
                        user_id=data.user_id,
                        template_id=deployment.template_id,
                        deployment_name=data.deployment_name,
                        status="pending",
                        configuration=deployment.configuration,
                        workflow_id=data.workflow_id,
                    )
                    .on_conflict_do_nothing(index_elements=["workflow_id"])
                    .returning(Deployment.id)
                )
            except IntegrityError as exc:
                if "deployments_user_name_key" not in str(exc.orig):
                    raise
                raise ApplicationError(
                    f"a deployment named {data.deployment_name!r} already exists",
                    type=DUPLICATE_NAME,
                    non_retryable=True,
                ) from None
            if deployment_id is None:  # an earlier attempt committed it
                deployment_id = await session.scalar(
                    select(Deployment.id).where(Deployment.workflow_id == data.workflow_id)
                )
                assert deployment_id is not None
                return deployment_id
            await add_history(
                session,
                deployment_id,
                "created",
                "pending",
                "Deployment created",
                {
                    "template": deployment.template_name,
                    "template_version": deployment.template_version,
                    "workflow_id": data.workflow_id,
                },
            )
        activity.logger.info(
            "deployment created",
            extra={"deployment_id": deployment_id, "workflow_id": data.workflow_id},
        )
        return deployment_id

    @activity.defn
    async def clone_disk_allocations(self, data: CloneDisksInput) -> None:
        """Copy the validated template disks (overrides applied) once; the template is untouched."""
        async with self._sessionmaker.begin() as session:
            disks = [dataclasses.asdict(disk) for disk in data.disks]
            details = {"disks": [f"{d['mount_point']} {d['size_gb']}G" for d in disks]}
            message = f"{len(disks)} disk allocation(s) cloned from the template"
            if not await record_step(
                session, data.deployment_id, "disks_allocated", "provisioning", message, details
            ):
                return
            if disks:
                await session.execute(
                    insert(DiskAllocation),
                    [{"deployment_id": data.deployment_id, **d} for d in disks],
                )

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
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(Deployment)
                .where(Deployment.id == data.deployment_id)
                .values(jenkins_job_id=data.run.job_id, updated_at=func.now())
            )

    @activity.defn
    async def record_step(self, data: RecordStepInput) -> None:
        async with self._sessionmaker.begin() as session:
            await record_step(
                session, data.deployment_id, data.event_key, data.status, data.message, data.details
            )
