"""The lease's timer outlives its worker and its workflow run: a lease that ends while no worker
runs is destroyed by the next worker, and a run that continued as new keeps the lease. On the dev
server, through the HTTP API, with a runner double."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client

from db.session import SessionMaker
from settings import Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import history, save_history, wait_status
from tests.workflows.test_lease_time_skipping import leased_template
from vocabulary.contracts import PipelineFinished
from vocabulary.runs import RunAction
from worker import build_worker
from workflows.deploy import DeployWorkflow


async def test_a_lease_that_ends_while_no_worker_runs_is_destroyed_by_the_next(
    api: httpx.AsyncClient,
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    template_id = await leased_template(api, admin, lease_s=4, lease_warnings_s=[2])
    body = {"template_id": template_id, "deployment_name": "pg-brief"}
    created = (await api.post("/api/deployments", json=body, headers=owner.headers)).json()
    handle = client.get_workflow_handle(created["workflow_id"])
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            await wait_status(api, owner, created["id"], "queued")
            await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=1))
            done = await wait_status(api, owner, created["id"], "succeeded")
    expires = datetime.fromisoformat(done["expires_at"])

    # No worker: the lease's warning and its end come due with nobody to act on them.
    await asyncio.sleep(max((expires - datetime.now(UTC)).total_seconds(), 0) + 1.5)
    detail = (await api.get(f"/api/deployments/{created['id']}", headers=owner.headers)).json()
    assert detail["status"] == "succeeded"
    assert len(runner.triggers) == 1

    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            await wait_status(api, owner, created["id"], "destroying")

            async def teardown_started() -> bool:  # `destroying` is recorded before the start
                return len(runner.triggers) == 2

            await wait_for(teardown_started)
            assert [t.action for t in runner.triggers] == [RunAction.DEPLOY, RunAction.DESTROY]
            await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2))
            destroyed = await wait_status(api, owner, created["id"], "destroyed")
    assert destroyed["expires_at"] is None
    messages = [r["message"] for r in await history(api, owner, created["id"])]
    assert "Destroy: its lease expired" in messages
    # A warning that came due with the end itself is not given late.
    assert not [m for m in messages if m.startswith("Lease ends")]
    await save_history(client, created["workflow_id"], "lease_expired")


async def test_the_lease_survives_continue_as_new(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    settings: Settings,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    settings.workflow_max_history_events = 30  # the API starts runs with this bound
    template_id = await leased_template(api, admin, lease_s=8, lease_warnings_s=[4])
    body = {"template_id": template_id, "deployment_name": "pg-renewed"}
    created = (await api.post("/api/deployments", json=body, headers=owner.headers)).json()
    handle = client.get_workflow_handle(created["workflow_id"])
    first_run = (await handle.describe()).run_id
    await wait_status(api, owner, created["id"], "queued")
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=1))
    await wait_status(api, owner, created["id"], "succeeded")

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await wait_for(continued)
    # The new run knows the lease: its warning, then its end.
    await wait_status(api, owner, created["id"], "destroying")
    messages = [r["message"] for r in await history(api, owner, created["id"])]
    warnings = [m for m in messages if m.startswith("Lease ends in 4 s")]
    assert len(warnings) == 1, messages
    assert messages.index(warnings[0]) < messages.index("Destroy: its lease expired")
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2))
    await wait_status(api, owner, created["id"], "destroyed")
