"""Leases on Temporal's time-skipping test server, through the real HTTP API: a 30-day lease
with its warnings, an extension that moves the timer (one past the maximum refused), the destroy
at expiry; and a destroy at expiry that fails, tried again later. The timers are the workflow's
own; the test only skips time.

The worker restart is in test_lease_restart.py, on the dev server: the test server skips no time
while a task waits for a worker, and its updates hang after a worker change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client

from api.app import create_app
from db.session import SessionMaker
from settings import Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.time_skipping import needs_test_server, start_time_skipping_server
from tests.workflows.test_deploy_flow import history, save_history, wait_status
from tests.workflows.test_retention_time_skipping import register_search_attributes
from vocabulary.contracts import DeployResult, PipelineFinished
from vocabulary.runs import RunAction
from worker import build_worker
from workflows.deploy import DeployWorkflow

HOUR, DAY = 3600, 86400

pytestmark = needs_test_server


@asynccontextmanager
async def time_skipping_stack(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The time-skipping server, and the API app talking to it over its real client."""
    env, port = await start_time_skipping_server()
    async with env:
        await register_search_attributes(env)
        # Status checks an hour apart: skipped time would otherwise fill the history with them
        # (the test sends each run's result itself).
        served = {"temporal_address": f"127.0.0.1:{port}", "pipeline_poll_interval_s": 3600}
        app = create_app(settings.model_copy(update=served))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
                yield env, api


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, sessionmaker: SessionMaker, runner: RecordingRunnerDouble
) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            yield


async def leased_template(api: httpx.AsyncClient, admin: Any, **lease: Any) -> int:
    body = {
        "name": "pg-leased",
        "service_type": "postgresql",
        "configuration": {"max_connections": 100, "provisio": lease},
        "disk_allocations": [
            {
                "disk_type": "ssd",
                "size_gb": 10,
                "mount_point": "/data/pgdata",
                "volume_group": "vg_data",
                "logical_volume": "lv_pgdata",
            }
        ],
    }
    response = await api.post("/api/templates", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def launch_succeeded(
    api: httpx.AsyncClient, env: Any, owner: Any, template_id: int, name: str
) -> Any:
    body = {"template_id": template_id, "deployment_name": name}
    response = await api.post("/api/deployments", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    await wait_status(api, owner, created["id"], "queued")
    handle = env.client.get_workflow_handle(created["workflow_id"])
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=1))
    return await wait_status(api, owner, created["id"], "succeeded")


async def row_appears(api: httpx.AsyncClient, owner: Any, deployment_id: int, start: str) -> Any:
    async def found() -> Any:
        rows = await history(api, owner, deployment_id)
        return next((r for r in rows if r["message"].startswith(start)), None)

    return await wait_for(found)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_a_30_day_lease_warns_is_extended_and_ends_in_a_destroy(
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    runner = RecordingRunnerDouble()
    import asyncio

    async with asyncio.timeout(150), time_skipping_stack(settings) as (env, api):
        template_id = await leased_template(api, admin, lease_s=30 * DAY, max_lease_s=60 * DAY)
        async with running_worker(env.client, settings, sessionmaker, runner):
            done = await launch_succeeded(api, env, owner, template_id, "pg-lease")
            deployment_id = done["id"]
            expires = at(done["expires_at"])
            lived = expires - at(done["created_at"])
            assert abs(lived - timedelta(days=30)) < timedelta(minutes=5), lived
            listed = (await api.get("/api/deployments", headers=owner.headers)).json()
            assert listed["items"][0]["expires_at"] == done["expires_at"]

            await env.sleep(timedelta(days=29) - timedelta(hours=1))
            rows = await history(api, owner, deployment_id)
            assert not [r for r in rows if r["message"].startswith("Lease ends")]
            await env.sleep(timedelta(hours=2))
            first = await row_appears(api, owner, deployment_id, "Lease ends in 24 h")
            assert first["details"]["expires_at"] == expires.isoformat()

            path = f"/api/deployments/{deployment_id}/lease"
            refused = await api.post(path, json={"extend_s": 60 * DAY}, headers=owner.headers)
            assert refused.status_code == 422, refused.text
            [error] = refused.json()["detail"]
            assert error["loc"] == ["body", "extend_s"]
            assert "max_lease_s" in error["msg"] and f"{60 * DAY}s" in error["msg"]

            moved = await api.post(path, json={"extend_s": 10 * DAY}, headers=owner.headers)
            assert moved.status_code == 200, moved.text
            new_expiry = expires + timedelta(days=10)
            assert at(moved.json()["expires_at"]) == new_expiry

            # The old expiry passes: nothing happens.
            await env.sleep(timedelta(days=1))
            detail = await api.get(f"/api/deployments/{deployment_id}", headers=owner.headers)
            assert detail.json()["status"] == "succeeded"
            # The new one's warnings, then its end.
            await env.sleep(timedelta(days=9))  # 39 days and an hour since the launch
            await row_appears(
                api, owner, deployment_id, f"Lease ends in 24 h (at {new_expiry.isoformat()})"
            )
            await env.sleep(timedelta(hours=22, minutes=30))
            await row_appears(api, owner, deployment_id, "Lease ends in 1 h")
            assert (
                await api.get(f"/api/deployments/{deployment_id}", headers=owner.headers)
            ).json()["status"] == "succeeded"
            # Just past the end: the teardown's own wait (300 s) must not be skipped over.
            await env.sleep(timedelta(minutes=31))
            await wait_status(api, owner, deployment_id, "destroying")
            assert [(t.run, t.action) for t in runner.triggers] == [
                (1, RunAction.DEPLOY),
                (2, RunAction.DESTROY),
            ]
            handle = env.client.get_workflow_handle(done["workflow_id"], result_type=DeployResult)
            await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2))
            assert (await handle.result()).status == "destroyed"

        final = (await api.get(f"/api/deployments/{deployment_id}", headers=owner.headers)).json()
        assert final["status"] == "destroyed" and final["expires_at"] is None
        messages = [r["message"] for r in await history(api, owner, deployment_id)]
        expected = [
            "Lease of 30 d: expires at",
            "Lease ends in 24 h",
            f"Lease extended to {new_expiry.isoformat()} by {owner.username}",
            f"Lease ends in 24 h (at {new_expiry.isoformat()})",
            f"Lease ends in 1 h (at {new_expiry.isoformat()})",
            "Destroy: its lease expired",
            "Teardown triggered",
            "Deployment destroyed (its lease expired); nothing of it is left",
        ]
        relevant = [
            m
            for m in messages
            if m.startswith(("Lease", "Destroy", "Teardown", "Deployment destroyed"))
        ]
        assert len(relevant) == len(expected), relevant
        assert all(m.startswith(e) for m, e in zip(relevant, expected, strict=True)), relevant
        await save_history(env.client, done["workflow_id"], "lease_extended")


async def test_a_destroy_at_expiry_that_fails_is_tried_again(
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
) -> None:
    owner, admin = await make_user("operator"), await make_user("admin")
    runner = RecordingRunnerDouble()
    async with time_skipping_stack(settings) as (env, api):
        template_id = await leased_template(api, admin, lease_s=DAY)
        async with running_worker(env.client, settings, sessionmaker, runner):
            done = await launch_succeeded(api, env, owner, template_id, "pg-sticky")
            handle = env.client.get_workflow_handle(done["workflow_id"], result_type=DeployResult)
            await env.sleep(timedelta(days=1, minutes=1))
            await wait_status(api, owner, done["id"], "destroying")
            await handle.signal(
                DeployWorkflow.pipeline_finished,
                PipelineFinished(False, {}, "task 'Remove the image files' failed", run=2),
            )
            failed = await wait_status(api, owner, done["id"], "failed")
            retry_at = at(failed["expires_at"])
            row = await row_appears(api, owner, done["id"], "The lease has ended")
            assert row["details"]["expires_at"] == retry_at.isoformat()
            assert retry_at > at(done["expires_at"]) + timedelta(minutes=59)

            await env.sleep(timedelta(hours=1, minutes=1))
            await wait_status(api, owner, done["id"], "destroying")
            assert [t.action for t in runner.triggers] == [
                RunAction.DEPLOY,
                RunAction.DESTROY,
                RunAction.DESTROY,
            ]
            await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=3))
            assert (await handle.result()).status == "destroyed"
        messages = [r["message"] for r in await history(api, owner, done["id"])]
        assert messages.count("Destroy: its lease expired") == 2
        assert "Destroy failed: task 'Remove the image files' failed" in messages
