"""A worker SIGKILLed after a side effect and before reporting it: a new worker finishes the
deployment, and nothing is lost or written twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from temporalio.client import Client

from db.models import Deployment, DeploymentHistory, DiskAllocation
from db.session import SessionMaker
from settings import PROJECT_ROOT, Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.contracts import PipelineFinished
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
    env = {
        **os.environ,
        "PROVISIO_DATABASE_URL": settings.database_url,
        "PROVISIO_TEMPORAL_ADDRESS": settings.temporal_address,
        "PROVISIO_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "PROVISIO_CALLBACK_SECRET": settings.callback_secret,
    }
    doomed = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", "disks", str(marker)],
        env=env,
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
        assert await session.scalar(select(func.count()).select_from(DiskAllocation)) == 2
        keys = list(await session.scalars(select(DeploymentHistory.event_key)))
    assert sorted(keys) == sorted(["created", "disks_allocated", "triggered", "result"])
