"""The whole flow through the HTTP API, with the callback's signals sent by the test."""

from __future__ import annotations

import os
from typing import Any

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from db.models import Deployment, DeploymentHistory, DiskAllocation, TemplateDiskAllocation
from db.session import SessionMaker
from settings import Settings
from tests.conftest import HISTORIES, wait_for
from tests.doubles import RecordingRunnerDouble
from vocabulary.contracts import PipelineFinished, PipelineStarted
from vocabulary.runs import RunState
from workflows.deploy import DeployWorkflow

SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
ACTIVITY_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
TIMER_STARTED = EventType.EVENT_TYPE_TIMER_STARTED


async def create(api: httpx.AsyncClient, account: Any, template_id: int, **extra: Any) -> Any:
    body = {"template_id": template_id, "deployment_name": "pg-one", **extra}
    response = await api.post("/api/deployments", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def wait_status(api: httpx.AsyncClient, account: Any, deployment_id: int, status: str) -> Any:
    async def reached() -> Any:
        body = (await api.get(f"/api/deployments/{deployment_id}", headers=account.headers)).json()
        return body if body["status"] == status else None

    return await wait_for(reached)


async def history(api: httpx.AsyncClient, account: Any, deployment_id: int) -> list[Any]:
    response = await api.get(f"/api/deployments/{deployment_id}/history", headers=account.headers)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def save_history(
    client: Client, workflow_id: str, name: str, run_id: str | None = None
) -> None:
    """With PROVISIO_RECORD_HISTORIES=1, refresh the replay test's fixtures."""
    if os.environ.get("PROVISIO_RECORD_HISTORIES") == "1":
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        recorded = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(recorded.to_json())


async def test_deployment_succeeds_with_one_history_row_per_step(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    sessionmaker: SessionMaker,
    settings: Settings,
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()
    created = await create(
        api,
        operator,
        template_id,
        configuration={"max_connections": 250},
        disk_allocations=[{"mount_point": "/data/pgdata", "size_gb": 50}],
    )
    assert created["status"] == "pending"
    assert created["workflow_id"].startswith("deployment-")
    deployment_id = created["id"]

    queued = await wait_status(api, operator, deployment_id, "queued")
    assert queued["jenkins_job_id"] == f"double-{deployment_id}"
    handle = client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])
    await handle.signal(
        DeployWorkflow.pipeline_started, PipelineStarted({"playbook": "deploy.yml"})
    )
    await wait_status(api, operator, deployment_id, "running")
    stats = {"web-1": {"ok": 7, "changed": 3, "failures": 0, "unreachable": 0}}
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, stats))
    done = await wait_status(api, operator, deployment_id, "succeeded")
    # The workflow lives on with the deployment, waiting for operations.
    assert await handle.query(DeployWorkflow.status) == "succeeded"

    rows = await history(api, operator, deployment_id)
    assert [(r["status"], r["message"]) for r in rows] == [
        ("created", "Deployment created"),
        ("provisioning", "2 disk allocation(s) cloned from the template"),
        ("queued", f"Pipeline triggered (double-{deployment_id})"),
        ("running", "Playbook started"),
        ("succeeded", "Deployment succeeded"),
    ]
    assert rows[-1]["details"]["stats"] == stats

    # The overrides apply to the deployment's own disks; the template's rows are untouched.
    sizes = {d["mount_point"]: d["size_gb"] for d in done["disk_allocations"]}
    assert sizes == {"/data/pgdata": 50, "/data/pgwal": 5}
    assert done["configuration"] == {"max_connections": 250, "listen": "localhost"}
    async with sessionmaker() as session:
        template_sizes = await session.scalars(
            select(TemplateDiskAllocation.size_gb).order_by(TemplateDiskAllocation.id)
        )
        assert list(template_sizes) == [20, 5]
        assert await session.scalar(select(func.count()).select_from(Deployment)) == 1
        assert await session.scalar(select(func.count()).select_from(DiskAllocation)) == 2
        keys = await session.scalars(select(DeploymentHistory.event_key))
        assert sorted(keys) == sorted(
            ["created", "disks_allocated", "triggered", "running", "result"]
        )

    # One pipeline run, with the deployment's data and a per-deployment callback URL and token.
    assert len(runner.triggers) == 1
    request = runner.triggers[0]
    assert request.callback_url.endswith(f"/api/deployments/{deployment_id}/callback?run=1")
    assert request.variables["provisio_deployment"]["name"] == "pg-one"
    assert len(request.callback_token) == 64

    # The Temporal UI can find it by its search attributes.
    query = (
        f'DeploymentId = {deployment_id} AND DeploymentStatus = "succeeded" '
        f'AND Owner = "{operator.username}" AND TemplateName = "postgres-small" '
        'AND ServiceType = "postgresql"'
    )
    found = await wait_for(lambda: _count(client, query))
    assert found == 1
    await save_history(client, created["workflow_id"], "succeeded")


async def _count(client: Client, query: str) -> int:
    return len([w async for w in client.list_workflows(query)])


async def test_playbook_failure_reported_by_callback_fails_the_deployment(
    api: httpx.AsyncClient, worker: None, client: Client, make_user: Any, make_template: Any
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")
    handle = client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])
    await handle.signal(
        DeployWorkflow.pipeline_finished,
        PipelineFinished(
            False, {"web-1": {"failures": 1}}, "task 'Make filesystem' failed on web-1"
        ),
    )
    await wait_status(api, operator, created["id"], "failed")
    rows = await history(api, operator, created["id"])
    assert rows[-1]["message"] == "Deployment failed: task 'Make filesystem' failed on web-1"
    assert [r["status"] for r in rows] == ["created", "provisioning", "queued", "failed"]
    await save_history(client, created["workflow_id"], "failed")


async def test_callback_never_arriving_times_out_and_cancels_the_run(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template(callback_timeout_s=2))
    done = await wait_status(api, operator, created["id"], "timed_out")
    assert done["status"] == "timed_out"
    rows = await history(api, operator, created["id"])
    assert rows[-1]["message"] == "No result within 2s"
    assert runner.cancelled == [f"double-{created['id']}"]
    await save_history(client, created["workflow_id"], "timed_out")


async def test_runner_failing_before_ansible_reports_fails_the_deployment(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    runner.state, runner.reason = RunState.FAILED, "build #7 failed: no agent"
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "failed")
    rows = await history(api, operator, created["id"])
    assert rows[-1]["details"]["reason"] == "build #7 failed: no agent"
    assert rows[-1]["message"].startswith("Pipeline failed before reporting")


async def test_lost_final_callback_is_reconciled_from_the_runner(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    runner.state, runner.stats = RunState.SUCCEEDED, {"web-1": {"ok": 3, "failures": 0}}
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "succeeded")
    rows = await history(api, operator, created["id"])
    assert rows[-1]["details"]["stats"] == runner.stats


async def test_late_signals_never_move_a_final_status(
    api: httpx.AsyncClient, worker: None, client: Client, make_user: Any, make_template: Any
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")
    handle = client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}))
    await wait_status(api, operator, created["id"], "succeeded")
    settled = await history(api, operator, created["id"])
    # After the result: a start and a contrary result of the same run, as a confused or
    # replaying sender would send them.
    await handle.signal(DeployWorkflow.pipeline_started, PipelineStarted({}))
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(False, {}, "late"))
    # A query is answered once the workflow has handled the signals before it.
    assert await handle.query(DeployWorkflow.status) == "succeeded"
    # Both signals reached the workflow, and it did nothing about them: no activity (no step
    # written) and no timer after the first of them.
    events = (await handle.fetch_history()).events
    late = [i for i, e in enumerate(events) if e.event_type == SIGNALED]
    assert len(late) == 3, late  # the result's signal and the two late ones
    assert events[late[-1]].workflow_execution_signaled_event_attributes.signal_name == (
        "pipeline_finished"
    )
    after = {events[i].event_type for i in range(late[1], len(events))}
    assert not after & {ACTIVITY_SCHEDULED, TIMER_STARTED}, after
    assert await history(api, operator, created["id"]) == settled
    assert [r["status"] for r in settled][-1] == "succeeded"
    assert "running" not in [r["status"] for r in settled]


async def test_a_refused_deployment_whose_row_was_lost_writes_nothing(
    worker: None,
    client: Client,
    settings: Settings,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    """The API's commit was lost and the workflow's own check refuses: nothing is written."""
    import uuid

    import pytest
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import ApplicationError

    from vocabulary.contracts import DeployRequest
    from vocabulary.disks import DiskOverride

    operator = await make_user("operator")
    request = DeployRequest(
        deployment_id=999_999,
        user_id=operator.id,
        username=operator.username,
        template_id=await make_template(),
        deployment_name="pg-one",
        disk_overrides=[DiskOverride("/etc", size_gb=1)],
    )
    handle = await client.start_workflow(
        DeployWorkflow.run,
        request,
        id=f"deployment-{uuid.uuid4()}",
        task_queue=settings.temporal_task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "DeploymentValidationError"
    assert cause.details[0][0]["loc"] == ["body", "disk_allocations", 0, "mount_point"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Deployment)) == 0
        assert await session.scalar(select(func.count()).select_from(DeploymentHistory)) == 0


async def test_a_recorded_deployment_the_workflow_refuses_ends_failed_with_the_errors(
    worker: None,
    client: Client,
    settings: Settings,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    """The API recorded the row, then the template changed under it: the workflow's own check
    refuses, and the deployment ends `failed` with the field errors instead of staying pending."""
    import uuid

    import pytest
    from temporalio.client import WorkflowFailureError

    from db.repository import insert_deployment, load_template_snapshot
    from domain.validation import validate_deployment
    from vocabulary.contracts import DeployRequest
    from vocabulary.disks import DiskOverride

    operator = await make_user("operator")
    request = DeployRequest(
        deployment_id=0,  # set once recorded
        user_id=operator.id,
        username=operator.username,
        template_id=await make_template(),
        deployment_name="pg-one",
    )
    workflow_id = f"deployment-{uuid.uuid4()}"
    async with sessionmaker.begin() as session:
        deployment = validate_deployment(
            await load_template_snapshot(session, request.template_id), request
        )
        new = await insert_deployment(
            session,
            workflow_id=workflow_id,
            user_id=operator.id,
            deployment_name="pg-one",
            deployment=deployment,
        )
    assert new is not None
    request.deployment_id = new.id
    # What the workflow sees is no longer valid (an override the template refuses).
    request.disk_overrides = [DiskOverride("/etc", size_gb=1)]
    handle = await client.start_workflow(
        DeployWorkflow.run, request, id=workflow_id, task_queue=settings.temporal_task_queue
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    async with sessionmaker() as session:
        row = await session.get(Deployment, request.deployment_id)
        assert row is not None and row.status == "failed"
        result = await session.scalar(
            select(DeploymentHistory).where(
                DeploymentHistory.deployment_id == row.id, DeploymentHistory.event_key == "result"
            )
        )
    assert result is not None and result.status == "failed"
    assert result.details["errors"][0]["loc"] == ["body", "disk_allocations", 0, "mount_point"]
    assert await handle.query(DeployWorkflow.status) == "failed"
    await save_history(client, workflow_id, "rejected")


async def test_variables_ansible_would_obey_fail_the_deployment_before_anything_runs(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    sessionmaker: SessionMaker,
    runner: RecordingRunnerDouble,
) -> None:
    from db.models import Template

    async with sessionmaker.begin() as session:
        template = Template(
            name="sneaky", service_type="x", configuration={"ansible_become_user": "root"}
        )
        session.add(template)
        await session.flush()
        template_id = template.id
    operator = await make_user("operator")
    created = await create(api, operator, template_id)
    done = await wait_status(api, operator, created["id"], "failed")
    rows = await history(api, operator, done["id"])
    assert "ansible_become_user" in rows[-1]["message"]
    assert runner.triggers == []
