"""Each database step, run twice as a retried activity would, writes its effect once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deployment_activities import DeploymentActivities
from activities.errors import DUPLICATE_NAME, VALIDATION_FAILED
from db.models import Deployment, DeploymentHistory, DiskAllocation
from db.repository import record_step
from db.session import SessionMaker
from settings import Settings
from workflows.contracts import (
    CloneDisksInput,
    CreateDeploymentInput,
    DeployRequest,
    DiskOverride,
    PipelineRun,
    RecordStepInput,
    RecordTriggeredInput,
    ValidatedDeployment,
)


async def _count(sessionmaker: SessionMaker, table: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
async def validated(
    settings: Settings, sessionmaker: SessionMaker, make_user: Any, make_template: Any
) -> tuple[DeploymentActivities, DeployRequest, ValidatedDeployment]:
    activities = DeploymentActivities(sessionmaker)
    user = await make_user("operator")
    request = DeployRequest(
        user_id=user.id,
        username=user.username,
        template_id=await make_template(),
        deployment_name="pg-one",
        disk_overrides=[DiskOverride("/data/pgwal", size_gb=8)],
    )
    deployment = await ActivityEnvironment().run(activities.validate_deployment, request)
    return activities, request, deployment


async def test_every_step_twice_writes_once(
    validated: tuple[DeploymentActivities, DeployRequest, ValidatedDeployment],
    sessionmaker: SessionMaker,
) -> None:
    activities, request, deployment = validated
    env = ActivityEnvironment()
    create = CreateDeploymentInput("wf-1", request.user_id, "pg-one", deployment)
    first = await env.run(activities.create_deployment, create)
    assert await env.run(activities.create_deployment, create) == first

    clone = CloneDisksInput(first, deployment.disks)
    await env.run(activities.clone_disk_allocations, clone)
    await env.run(activities.clone_disk_allocations, clone)

    triggered = RecordTriggeredInput(first, PipelineRun("job-1"))
    await env.run(activities.record_pipeline_triggered, triggered)
    await env.run(activities.record_pipeline_triggered, triggered)

    step = RecordStepInput(first, "result", "succeeded", "Deployment succeeded")
    await env.run(activities.record_step, step)
    await env.run(activities.record_step, step)

    assert await _count(sessionmaker, Deployment) == 1
    assert await _count(sessionmaker, DiskAllocation) == 2
    assert await _count(sessionmaker, DeploymentHistory) == 4
    async with sessionmaker() as session:
        row = await session.get(Deployment, first)
        assert row is not None and row.status == "succeeded" and row.jenkins_job_id == "job-1"
        sizes = await session.scalars(select(DiskAllocation.size_gb).order_by(DiskAllocation.id))
        assert list(sizes) == [20, 8]


async def test_a_row_created_without_its_disks_gets_them_cloned_once(
    validated: tuple[DeploymentActivities, DeployRequest, ValidatedDeployment],
    sessionmaker: SessionMaker,
) -> None:
    """Runs started before the create step wrote the disks still get them, exactly once."""
    activities, request, deployment = validated
    async with sessionmaker.begin() as session:
        row = Deployment(
            user_id=request.user_id,
            template_id=deployment.template_id,
            deployment_name="pg-old",
            status="pending",
            configuration={},
            workflow_id="wf-old",
        )
        session.add(row)
    env = ActivityEnvironment()
    clone = CloneDisksInput(row.id, deployment.disks)
    await env.run(activities.clone_disk_allocations, clone)
    await env.run(activities.clone_disk_allocations, clone)
    assert await _count(sessionmaker, DiskAllocation) == 2
    async with sessionmaker() as session:
        status = await session.scalar(select(Deployment.status).where(Deployment.id == row.id))
    assert status == "provisioning"


async def test_duplicate_name_from_another_workflow_is_a_permanent_refusal(
    validated: tuple[DeploymentActivities, DeployRequest, ValidatedDeployment],
) -> None:
    activities, request, deployment = validated
    env = ActivityEnvironment()
    await env.run(
        activities.create_deployment,
        CreateDeploymentInput("wf-1", request.user_id, "pg-one", deployment),
    )
    with pytest.raises(ApplicationError) as refused:
        await env.run(
            activities.create_deployment,
            CreateDeploymentInput("wf-2", request.user_id, "pg-one", deployment),
        )
    assert refused.value.type == DUPLICATE_NAME and refused.value.non_retryable


async def test_validation_errors_are_non_retryable_with_field_paths(
    validated: tuple[DeploymentActivities, DeployRequest, ValidatedDeployment],
) -> None:
    activities, request, _ = validated
    request.disk_overrides = [DiskOverride("/data/pgwal", size_gb=0)]
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.validate_deployment, request)
    assert refused.value.type == VALIDATION_FAILED and refused.value.non_retryable
    assert refused.value.details[0][0]["loc"] == ["body", "disk_allocations", 0, "size_gb"]


async def test_status_never_moves_backwards_nor_leaves_a_final_status(
    validated: tuple[DeploymentActivities, DeployRequest, ValidatedDeployment],
    sessionmaker: SessionMaker,
) -> None:
    activities, request, deployment = validated
    deployment_id = await ActivityEnvironment().run(
        activities.create_deployment,
        CreateDeploymentInput("wf-1", request.user_id, "pg-one", deployment),
    )

    async def status_after(step: str, status: str) -> str | None:
        async with sessionmaker.begin() as session:
            assert await record_step(session, deployment_id, step, status, step)
            return await session.scalar(
                select(Deployment.status).where(Deployment.id == deployment_id)
            )

    assert await status_after("s1", "queued") == "queued"
    assert await status_after("s2", "provisioning") == "queued"
    assert await status_after("s3", "queued") == "queued"
    assert await status_after("s4", "failed") == "failed"
    assert await status_after("s5", "running") == "failed"
    assert await status_after("s6", "succeeded") == "failed"
