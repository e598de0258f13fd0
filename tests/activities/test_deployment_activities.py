"""Each database step, run twice as a retried activity would, writes its effect once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deployment_activities import DeploymentActivities
from db.models import Deployment, DeploymentHistory, DiskAllocation
from db.repository import insert_deployment, record_step
from db.session import SessionMaker
from settings import Settings
from vocabulary.contracts import (
    DeployRequest,
    DisksAllocatedInput,
    RecordDeploymentInput,
    RecordRunInput,
    RecordStepInput,
    RejectDeploymentInput,
    ValidatedDeployment,
)
from vocabulary.disks import DiskOverride
from vocabulary.errors import DUPLICATE_NAME, VALIDATION_FAILED
from vocabulary.runs import RunRef
from vocabulary.statuses import DeploymentStatus as S

Validated = tuple[DeploymentActivities, DeployRequest, ValidatedDeployment]


async def _count(sessionmaker: SessionMaker, table: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def _recorded_by_api(
    sessionmaker: SessionMaker, request: DeployRequest, deployment: ValidatedDeployment, wf: str
) -> int:
    """The row the API writes before it starts the workflow."""
    async with sessionmaker.begin() as session:
        new = await insert_deployment(
            session,
            workflow_id=wf,
            user_id=request.user_id,
            deployment_name=request.deployment_name,
            deployment=deployment,
        )
    assert new is not None
    return new.id


@pytest.fixture
async def validated(
    settings: Settings, sessionmaker: SessionMaker, make_user: Any, make_template: Any
) -> Validated:
    activities = DeploymentActivities(sessionmaker)
    user = await make_user("operator")
    request = DeployRequest(
        deployment_id=0,  # not recorded yet; each test records it its own way
        user_id=user.id,
        username=user.username,
        template_id=await make_template(),
        deployment_name="pg-one",
        disk_overrides=[DiskOverride("/data/pgwal", size_gb=8)],
    )
    deployment = await ActivityEnvironment().run(activities.validate_deployment, request)
    return activities, request, deployment


async def test_every_step_twice_writes_once(
    validated: Validated, sessionmaker: SessionMaker
) -> None:
    activities, request, deployment = validated
    deployment_id = await _recorded_by_api(sessionmaker, request, deployment, "wf-1")
    env = ActivityEnvironment()
    record = RecordDeploymentInput(deployment_id, "wf-1", request.user_id, "pg-one", deployment)
    await env.run(activities.record_deployment, record)
    await env.run(activities.record_deployment, record)

    disks = DisksAllocatedInput(deployment_id, deployment.disks)
    await env.run(activities.record_disks_allocated, disks)
    await env.run(activities.record_disks_allocated, disks)

    step = RecordStepInput(deployment_id, "triggered", S.QUEUED, "Pipeline triggered (job-1)")
    triggered = RecordRunInput(deployment_id, RunRef("job-1"), step)
    await env.run(activities.record_pipeline_triggered, triggered)
    await env.run(activities.record_pipeline_triggered, triggered)

    step = RecordStepInput(deployment_id, "result", S.SUCCEEDED, "Deployment succeeded")
    await env.run(activities.record_step, step)
    await env.run(activities.record_step, step)

    assert await _count(sessionmaker, Deployment) == 1
    assert await _count(sessionmaker, DiskAllocation) == 2
    assert await _count(sessionmaker, DeploymentHistory) == 4
    async with sessionmaker() as session:
        row = await session.get(Deployment, deployment_id)
        assert row is not None and row.status == S.SUCCEEDED and row.jenkins_job_id == "job-1"
        sizes = await session.scalars(select(DiskAllocation.size_gb).order_by(DiskAllocation.id))
        assert list(sizes) == [20, 8]
        first = await session.scalar(
            select(DeploymentHistory.status).order_by(DeploymentHistory.id).limit(1)
        )
    assert first == "created"  # the seed's first row: ('created', 'Deployment created')


async def test_a_row_whose_api_commit_was_lost_is_written_once_under_its_id(
    validated: Validated, sessionmaker: SessionMaker
) -> None:
    """The API died after starting the workflow and before its commit: the workflow's record
    step writes the same deployment, its disks and its created row, under the API's id."""
    activities, request, deployment = validated
    lost_id = await _recorded_by_api(sessionmaker, request, deployment, "wf-other") + 10
    env = ActivityEnvironment()
    record = RecordDeploymentInput(lost_id, "wf-lost", request.user_id, "pg-lost", deployment)
    await env.run(activities.record_deployment, record)
    await env.run(activities.record_deployment, record)
    async with sessionmaker() as session:
        row = await session.get(Deployment, lost_id)
        assert row is not None and row.workflow_id == "wf-lost"
        disks = await session.scalar(
            select(func.count()).where(DiskAllocation.deployment_id == lost_id)
        )
        history = await session.scalar(
            select(func.count()).where(DeploymentHistory.deployment_id == lost_id)
        )
    assert (disks, history) == (2, 1)


async def test_duplicate_name_from_another_workflow_is_a_permanent_refusal(
    validated: Validated, sessionmaker: SessionMaker
) -> None:
    activities, request, deployment = validated
    taken = await _recorded_by_api(sessionmaker, request, deployment, "wf-1")
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            activities.record_deployment,
            RecordDeploymentInput(taken + 1, "wf-2", request.user_id, "pg-one", deployment),
        )
    assert refused.value.type == DUPLICATE_NAME and refused.value.non_retryable
    assert await _count(sessionmaker, Deployment) == 1


async def test_a_rejected_deployment_ends_failed_with_the_errors(
    validated: Validated, sessionmaker: SessionMaker
) -> None:
    activities, request, deployment = validated
    deployment_id = await _recorded_by_api(sessionmaker, request, deployment, "wf-1")
    errors = [{"loc": ["body", "template_id"], "msg": "template is not active", "type": "x"}]
    reject = RejectDeploymentInput(deployment_id, "invalid", errors)
    await ActivityEnvironment().run(activities.reject_deployment, reject)
    await ActivityEnvironment().run(activities.reject_deployment, reject)
    async with sessionmaker() as session:
        row = await session.get(Deployment, deployment_id)
        details = await session.scalars(
            select(DeploymentHistory.details).where(DeploymentHistory.event_key == "result")
        )
        assert row is not None and row.status == S.FAILED
        assert [d["errors"] for d in details] == [errors]


async def test_validation_errors_are_non_retryable_with_field_paths(validated: Validated) -> None:
    activities, request, _ = validated
    request.disk_overrides = [DiskOverride("/data/pgwal", size_gb=0)]
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.validate_deployment, request)
    assert refused.value.type == VALIDATION_FAILED and refused.value.non_retryable
    assert refused.value.details[0][0]["loc"] == ["body", "disk_allocations", 0, "size_gb"]


async def test_status_never_moves_backwards_nor_leaves_a_final_status(
    validated: Validated, sessionmaker: SessionMaker
) -> None:
    _, request, deployment = validated
    deployment_id = await _recorded_by_api(sessionmaker, request, deployment, "wf-1")

    async def status_after(step: str, status: S) -> str | None:
        async with sessionmaker.begin() as session:
            assert await record_step(session, RecordStepInput(deployment_id, step, status, step))
            return await session.scalar(
                select(Deployment.status).where(Deployment.id == deployment_id)
            )

    assert await status_after("s1", S.QUEUED) == S.QUEUED
    assert await status_after("s2", S.PROVISIONING) == S.QUEUED
    assert await status_after("s3", S.QUEUED) == S.QUEUED
    assert await status_after("s4", S.FAILED) == S.FAILED
    assert await status_after("s5", S.RUNNING) == S.FAILED
    assert await status_after("s6", S.SUCCEEDED) == S.FAILED
