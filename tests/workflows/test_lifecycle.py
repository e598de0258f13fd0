"""The life of a deployment after its launch, through the HTTP API and the real Temporal server,
with a runner double and the callback's signals sent by the test: cancel, destroy, retry,
failure retention, refusals, and continue-as-new."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from db.models import DiskAllocation
from db.session import SessionMaker
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import create, history, save_history, wait_status
from vocabulary.contracts import PipelineFinished, PipelineStarted
from vocabulary.runs import RunAction
from workflows.deploy import DeployWorkflow

STATS = {"web-1": {"ok": 3, "changed": 1, "failures": 0, "unreachable": 0}}


def handle_of(client: Client, created: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])


async def operate(
    api: httpx.AsyncClient, account: Any, deployment_id: int, operation: str, **headers: str
) -> httpx.Response:
    return await api.post(
        f"/api/deployments/{deployment_id}/{operation}", headers={**account.headers, **headers}
    )


async def triggered(runner: RecordingRunnerDouble, count: int) -> None:
    async def enough() -> bool:
        return len(runner.triggers) >= count

    await wait_for(enough)


async def disk_states(sessionmaker: SessionMaker, deployment_id: int) -> set[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(DiskAllocation.state).where(DiskAllocation.deployment_id == deployment_id)
        )
        return set(rows)


async def succeeded(api: httpx.AsyncClient, client: Client, account: Any, template_id: int) -> Any:
    created = await create(api, account, template_id)
    await wait_status(api, account, created["id"], "queued")
    await handle_of(client, created).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=1)
    )
    return await wait_status(api, account, created["id"], "succeeded")


async def test_cancel_while_queued_stops_the_run_tears_down_and_ends_cancelled(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    sessionmaker: SessionMaker,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")

    answer = await operate(api, operator, created["id"], "cancel")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "cancelling"
    assert answer.json()["allowed_operations"] == []
    again = await operate(api, operator, created["id"], "cancel")
    assert again.status_code == 202 and again.json()["status"] == "cancelling"  # one cancel

    await triggered(runner, 2)  # the teardown run, after the deploy run was stopped
    deploy, teardown = runner.triggers
    assert (deploy.action, deploy.run) == (RunAction.DEPLOY, 1)
    assert (teardown.action, teardown.run) == (RunAction.DESTROY, 2)
    assert len(runner.cancelled) == 1
    await handle_of(client, created).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    done = await wait_status(api, operator, created["id"], "cancelled")
    assert done["allowed_operations"] == []
    assert (await handle_of(client, created).result()).status == "cancelled"
    rows = await history(api, operator, created["id"])
    assert [r["status"] for r in rows] == [
        "created", "provisioning", "queued", "cancelling", "cancelling", "cancelled",
    ]  # fmt: skip
    assert rows[3]["message"] == f"Cancel requested by {operator.username}"
    assert rows[4]["message"].startswith("Teardown triggered")
    assert await disk_states(sessionmaker, created["id"]) == {"released"}
    late = await operate(api, operator, created["id"], "cancel")
    assert late.status_code == 409
    await save_history(client, created["workflow_id"], "cancelled")


async def test_cancel_while_running_ignores_the_cancelled_runs_late_result(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")
    handle = handle_of(client, created)
    await handle.signal(DeployWorkflow.pipeline_started, PipelineStarted({}, run=1))
    await wait_status(api, operator, created["id"], "running")
    assert (await operate(api, operator, created["id"], "cancel")).status_code == 202
    await triggered(runner, 2)
    # The stopped run's final callback arrives late: it must not settle anything.
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=1))
    await asyncio.sleep(0.5)
    detail = (await api.get(f"/api/deployments/{created['id']}", headers=operator.headers)).json()
    assert detail["status"] == "cancelling"
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2))
    await wait_status(api, operator, created["id"], "cancelled")


async def test_destroy_after_success_then_nothing_more_is_allowed(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    sessionmaker: SessionMaker,
) -> None:
    operator = await make_user("operator")
    done = await succeeded(api, client, operator, await make_template())
    assert done["allowed_operations"] == ["destroy"]
    assert {d["state"] for d in done["disk_allocations"]} == {"allocated"}
    refused = await operate(api, operator, done["id"], "cancel")
    assert refused.status_code == 409
    assert "succeeded" in refused.json()["detail"]
    assert (await operate(api, operator, done["id"], "retry")).status_code == 409

    answer = await operate(api, operator, done["id"], "destroy", **{"Idempotency-Key": "d-1"})
    assert answer.status_code == 202 and answer.json()["status"] == "destroying"
    twice = await operate(api, operator, done["id"], "destroy", **{"Idempotency-Key": "d-1"})
    assert twice.status_code == 202
    await triggered(runner, 2)
    assert runner.triggers[1].action == RunAction.DESTROY
    await handle_of(client, done).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    destroyed = await wait_status(api, operator, done["id"], "destroyed")
    assert {d["state"] for d in destroyed["disk_allocations"]} == {"released"}
    assert len(runner.triggers) == 2  # one teardown, however often it was asked
    gone = await operate(api, operator, done["id"], "destroy")
    assert gone.status_code == 409
    assert "destroyed" in gone.json()["detail"]
    await save_history(client, done["workflow_id"], "destroyed")


async def test_a_refused_operation_leaves_no_trace(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")
    refused = await operate(api, operator, created["id"], "destroy")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "the deployment is queued: only a succeeded, failed or timed-out deployment can be"
        " destroyed"
    )
    # The workflow's own status checks go on; the refused update left no event of its own.
    recorded = await handle_of(client, created).fetch_history()
    kinds = {EventType.Name(event.event_type) for event in recorded.events}
    assert not {kind for kind in kinds if "UPDATE" in kind}, kinds
    rows = await history(api, operator, created["id"])
    assert "destroying" not in [r["status"] for r in rows]


async def test_retry_runs_the_pipeline_again_as_attempt_two(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")
    handle = handle_of(client, created)
    await handle.signal(
        DeployWorkflow.pipeline_finished,
        PipelineFinished(False, {"web-1": {"failures": 1}}, "task 'x' failed on web-1", run=1),
    )
    failed = await wait_status(api, operator, created["id"], "failed")
    assert failed["retained_until"] is not None
    assert failed["allowed_operations"] == ["destroy", "retry"]

    answer = await operate(api, operator, created["id"], "retry")
    assert answer.status_code == 202, answer.text
    assert answer.json()["attempt"] == 2
    await triggered(runner, 2)
    assert (runner.triggers[1].action, runner.triggers[1].run) == (RunAction.DEPLOY, 2)
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2))
    done = await wait_status(api, operator, created["id"], "succeeded")
    assert done["attempt"] == 2 and done["retained_until"] is None
    rows = await history(api, operator, created["id"])
    assert [(r["status"], r["attempt"]) for r in rows][-3:] == [
        ("provisioning", 2),
        ("queued", 2),
        ("succeeded", 2),
    ]
    await save_history(client, created["workflow_id"], "retried")


async def test_a_failed_deployment_is_torn_down_when_its_retention_ends(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template(failure_retention_s=2))
    await wait_status(api, operator, created["id"], "queued")
    handle = handle_of(client, created)
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(False, {}, run=1))
    await wait_status(api, operator, created["id"], "failed")
    await wait_status(api, operator, created["id"], "destroying")
    await triggered(runner, 2)
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2))
    await wait_status(api, operator, created["id"], "destroyed")
    rows = await history(api, operator, created["id"])
    assert any(r["message"] == "Destroy: its failure retention ended" for r in rows)
    assert rows[-1]["message"] == (
        "Deployment destroyed (its failure retention ended); nothing of it is left"
    )
    await save_history(client, created["workflow_id"], "retention_ended")


async def test_a_retry_within_retention_cancels_its_teardown(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template(failure_retention_s=2))
    await wait_status(api, operator, created["id"], "queued")
    handle = handle_of(client, created)
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(False, {}, run=1))
    await wait_status(api, operator, created["id"], "failed")
    assert (await operate(api, operator, created["id"], "retry")).status_code == 202
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2))
    await wait_status(api, operator, created["id"], "succeeded")
    await asyncio.sleep(3)
    detail = (await api.get(f"/api/deployments/{created['id']}", headers=operator.headers)).json()
    assert detail["status"] == "succeeded"
    assert [t.action for t in runner.triggers] == [RunAction.DEPLOY, RunAction.DEPLOY]


async def test_a_teardown_that_fails_settles_failed_and_can_be_destroyed_again(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    done = await succeeded(api, client, operator, await make_template())
    handle = handle_of(client, done)
    assert (await operate(api, operator, done["id"], "destroy")).status_code == 202
    await triggered(runner, 2)
    await handle.signal(
        DeployWorkflow.pipeline_finished,
        PipelineFinished(False, {}, "task 'Remove the image files' failed on web-1", run=2),
    )
    failed = await wait_status(api, operator, done["id"], "failed")
    assert failed["allowed_operations"] == ["destroy", "retry"]
    rows = await history(api, operator, done["id"])
    assert rows[-1]["message"] == ("Destroy failed: task 'Remove the image files' failed on web-1")
    assert (await operate(api, operator, done["id"], "destroy")).status_code == 202
    await triggered(runner, 3)
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=3))
    await wait_status(api, operator, done["id"], "destroyed")


async def test_operations_need_an_operator_who_owns_the_deployment(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
) -> None:
    owner, other = await make_user("operator"), await make_user("operator")
    viewer, admin = await make_user("viewer"), await make_user("admin")
    created = await create(api, owner, await make_template())
    await wait_status(api, owner, created["id"], "queued")
    assert (await operate(api, other, created["id"], "cancel")).status_code == 404
    assert (await operate(api, viewer, created["id"], "cancel")).status_code == 403
    assert (await operate(api, owner, 987_654, "cancel")).status_code == 404
    assert (await operate(api, admin, created["id"], "cancel")).status_code == 202


async def test_the_workflow_continues_as_new_and_keeps_its_state(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Any,
) -> None:
    operator = await make_user("operator")
    settings.workflow_max_history_events = 15  # the API starts runs with this bound
    created = await create(api, operator, await make_template(failure_retention_s=3600))
    await wait_status(api, operator, created["id"], "queued")
    handle = handle_of(client, created)
    first_run = (await handle.describe()).run_id
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(False, {}, run=1))
    await wait_status(api, operator, created["id"], "failed")

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await wait_for(continued)
    # The new run knows where the deployment stands: failed, retryable, attempt 1.
    assert (await operate(api, operator, created["id"], "retry")).status_code == 202
    await triggered(runner, 2)
    assert runner.triggers[1].run == 2
    latest = client.get_workflow_handle_for(DeployWorkflow.run, created["workflow_id"])
    await latest.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=2))
    done = await wait_status(api, operator, created["id"], "succeeded")
    assert done["attempt"] == 2
    await save_history(client, created["workflow_id"], "continued_as_new", run_id=first_run)


async def test_cancel_while_pending_ends_cancelled_with_nothing_started(
    api: httpx.AsyncClient,
    client: Client,
    settings: Any,
    sessionmaker: SessionMaker,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    """No worker yet: the deployment is pending when the cancel is sent. The worker that comes
    takes the cancel before the launch's first step; no run is ever started."""
    from concurrent.futures import ThreadPoolExecutor

    from worker import build_worker

    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    assert created["status"] == "pending"
    cancel = asyncio.create_task(operate(api, operator, created["id"], "cancel"))
    await asyncio.sleep(0.5)  # the update waits in Temporal for a worker
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            answer = await cancel
            assert answer.status_code == 202, answer.text
            # A destroy while the cancel runs is refused: one operation at a time.
            refused = await operate(api, operator, created["id"], "destroy")
            assert refused.status_code == 409
            done = await wait_status(api, operator, created["id"], "cancelled")
    assert runner.triggers == []
    assert {d["state"] for d in done["disk_allocations"]} == {"released"}
    rows = await history(api, operator, created["id"])
    assert [r["status"] for r in rows] == ["created", "cancelling", "cancelled"]


async def test_two_retries_at_once_make_one_attempt(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    created = await create(api, operator, await make_template())
    await wait_status(api, operator, created["id"], "queued")
    await handle_of(client, created).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(False, {}, run=1)
    )
    await wait_status(api, operator, created["id"], "failed")
    answers = await asyncio.gather(
        *(
            operate(api, operator, created["id"], "retry", **{"Idempotency-Key": f"click-{i}"})
            for i in range(2)
        )
    )
    assert sorted(a.status_code for a in answers) == [202, 409]
    await triggered(runner, 2)
    await asyncio.sleep(0.5)
    assert [(t.run, t.action) for t in runner.triggers] == [
        (1, RunAction.DEPLOY),
        (2, RunAction.DEPLOY),
    ]
    detail = (await api.get(f"/api/deployments/{created['id']}", headers=operator.headers)).json()
    assert detail["attempt"] == 2
