"""A worker SIGKILLed after a side effect and before reporting it: a new worker finishes the
deployment, and nothing is lost or written twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from temporalio.client import Client

from db.models import Deployment, DeploymentHistory, DiskAllocation
from db.repository import next_deployment_id
from db.session import SessionMaker
from settings import PROJECT_ROOT, Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.contracts import DeployRequest, PipelineFinished
from worker import build_worker
from workflows.deploy import DeployWorkflow


async def test_killed_worker_loses_nothing_and_duplicates_nothing(
    api: httpx.AsyncClient,
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
    make_template: Any,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "committed"
    doomed = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", "disks", str(marker)],
        env=_worker_env(settings),
        cwd=PROJECT_ROOT,
    )
    try:
        operator = await make_user("operator")
        created = await api.post(
            "/api/deployments",
            json={"template_id": await make_template(), "deployment_name": "pg-one"},
            headers=operator.headers,
        )
        assert created.status_code == 201, created.text
        deployment_id = created.json()["id"]

        async def committed() -> bool:
            return marker.exists()

        await wait_for(committed, timeout_s=30)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()

    # The step's row is in the database; Temporal never heard that the activity completed.
    async with sessionmaker() as session:
        keys = list(await session.scalars(select(DeploymentHistory.event_key)))
        assert sorted(keys) == ["created", "disks_allocated"]

    runner = RecordingRunnerDouble()
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            handle = client.get_workflow_handle_for(
                DeployWorkflow.run, created.json()["workflow_id"]
            )

            async def triggered() -> bool:
                return bool(runner.triggers)

            # The retry comes after the activity's start-to-close timeout.
            await wait_for(triggered, timeout_s=60)
            await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}))

            async def settled() -> bool:
                return await handle.query(DeployWorkflow.status) == "succeeded"

            await wait_for(settled)

    assert len(runner.triggers) == 1
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Deployment.id))) == [deployment_id]
        keys = list(await session.scalars(select(DeploymentHistory.event_key)))
    # The killed step's row once, though the step ran twice. (The deployment and its disks were
    # the API's writes; the next test has the killed worker write them.)
    assert sorted(keys) == sorted(["created", "disks_allocated", "triggered", "result"])


async def test_a_worker_killed_after_writing_the_deployment_writes_it_once(
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
    make_template: Any,
    tmp_path: Path,
) -> None:
    """The API died before recording the deployment, so the workflow's own step writes the row,
    its disks and its `created` row; its worker is SIGKILLed right after that commit. A new
    worker runs the step again and the deployment ends with one row, two disks, each step once."""
    marker = tmp_path / "committed"
    operator = await make_user("operator")
    async with sessionmaker() as session:
        deployment_id = await next_deployment_id(session)
    request = DeployRequest(
        deployment_id=deployment_id,
        user_id=operator.id,
        username=operator.username,
        template_id=await make_template(),
        deployment_name="pg-one",
        poll_interval_s=settings.pipeline_poll_interval_s,
    )
    doomed = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", "record", str(marker)],
        env=_worker_env(settings),
        cwd=PROJECT_ROOT,
    )
    try:
        handle = await client.start_workflow(
            DeployWorkflow.run,
            request,
            id=f"deployment-{uuid.uuid4()}",
            task_queue=settings.temporal_task_queue,
        )

        async def committed() -> bool:
            return marker.exists()

        await wait_for(committed, timeout_s=30)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()

    # Only the killed worker wrote these; Temporal never heard that its step completed.
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Deployment.id))) == [deployment_id]
        assert await session.scalar(select(func.count()).select_from(DiskAllocation)) == 2
        keys = list(await session.scalars(select(DeploymentHistory.event_key)))
        assert keys == ["created"]

    runner = RecordingRunnerDouble()
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):

            async def triggered() -> bool:
                return bool(runner.triggers)

            # The step is retried after its start-to-close timeout.
            await wait_for(triggered, timeout_s=60)
            await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}))

            async def settled() -> bool:
                return await handle.query(DeployWorkflow.status) == "succeeded"

            await wait_for(settled)

    assert len(runner.triggers) == 1
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Deployment.id))) == [deployment_id]
        disks = list(await session.scalars(select(DiskAllocation.mount_point)))
        keys = list(await session.scalars(select(DeploymentHistory.event_key)))
    assert sorted(disks) == ["/data/pgdata", "/data/pgwal"]
    assert sorted(keys) == sorted(["created", "disks_allocated", "triggered", "result"])


def _worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PROVISIO_DATABASE_URL": settings.database_url,
        "PROVISIO_TEMPORAL_ADDRESS": settings.temporal_address,
        "PROVISIO_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "PROVISIO_CALLBACK_SECRET": settings.callback_secret,
    }
