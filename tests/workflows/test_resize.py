"""Resizing a succeeded deployment, on the real Temporal server with the runner double: the
`resize` Update's refusals, the status moves (succeeded → updating → succeeded | failed), the
history rows, the run that deploys the new sizes, and the disks' sizes in the detail (taken only
when a run made them; a retry after a failed resize deploys them)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import create, history, save_history, wait_status
from tests.workflows.test_lifecycle import STATS, handle_of, operate, succeeded, triggered
from vocabulary.contracts import ChangeRequest, DeployRequest, PipelineFinished
from vocabulary.disks import DiskResize
from vocabulary.errors import CHANGE_REFUSED, OPERATION_REFUSED
from vocabulary.runs import RunAction
from workflows.deploy import DeployWorkflow


def sizes(detail: dict[str, Any]) -> dict[str, int]:
    return {disk["mount_point"]: disk["size_gb"] for disk in detail["disk_allocations"]}


def run_sizes(runner: RecordingRunnerDouble, index: int) -> dict[str, int]:
    disks = runner.triggers[index].variables["provisio_disks"]
    return {disk["mount_point"]: disk["size_gb"] for disk in disks}


async def refusal(client: Client, created: dict[str, Any], *disks: DiskResize) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle_of(client, created).execute_update(
            DeployWorkflow.change, ChangeRequest("operator", list(disks))
        )
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_a_resize_grows_the_disks_with_a_new_run_and_settles_succeeded(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
) -> None:
    operator = await make_user("operator")
    done = await succeeded(api, client, operator, await make_template())
    assert sizes(done) == {"/data/pgdata": 20, "/data/pgwal": 5}
    handle = handle_of(client, done)

    accepted = await handle.execute_update(
        DeployWorkflow.change,
        ChangeRequest(operator.username, [DiskResize("/data/pgdata", 40)]),
        id="resize-1",
    )
    assert accepted.status == "updating"
    again = await handle.execute_update(
        DeployWorkflow.change,
        ChangeRequest(operator.username, [DiskResize("/data/pgdata", 40)]),
        id="resize-1",
    )
    assert again.status == "updating"  # the same update id: one resize
    updating = await wait_status(api, operator, done["id"], "updating")
    assert sizes(updating) == {"/data/pgdata": 20, "/data/pgwal": 5}  # not grown yet
    assert updating["allowed_operations"] == []

    await triggered(runner, 2)
    assert len(runner.triggers) == 2
    assert (runner.triggers[1].action, runner.triggers[1].run) == (RunAction.DEPLOY, 2)
    assert run_sizes(runner, 1) == {"/data/pgdata": 40, "/data/pgwal": 5}
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2))
    grown = await wait_status(api, operator, done["id"], "succeeded")
    assert sizes(grown) == {"/data/pgdata": 40, "/data/pgwal": 5}
    assert {disk["state"] for disk in grown["disk_allocations"]} == {"allocated"}
    assert grown["attempt"] == 1

    rows = await history(api, operator, done["id"])
    assert [(r["status"], r["message"]) for r in rows][-3:] == [
        ("updating", f"Resize requested: /data/pgdata 20→40 GB by {operator.username}"),
        ("updating", f"Pipeline triggered (double-{done['id']}-2)"),
        ("succeeded", "Resize succeeded: /data/pgdata 40 GB, /data/pgwal 5 GB"),
    ]
    # And again, from the new sizes: 40 is now the floor.
    cause = await refusal(client, grown, DiskResize("/data/pgdata", 30))
    assert cause.type == CHANGE_REFUSED
    assert cause.details[0] == [
        {
            "loc": ["body", "disk_allocations", 0, "size_gb"],
            "msg": "the disk /data/pgdata is 40 GB; 30 GB would shrink it, and disks only grow",
            "type": "shrink",
        }
    ]
    await save_history(client, done["workflow_id"], "resized")


async def test_a_failed_resize_fails_with_the_reason_and_a_retry_deploys_the_new_sizes(
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
    await handle.execute_update(
        DeployWorkflow.change,
        ChangeRequest(
            operator.username, [DiskResize("/data/pgwal", 8), DiskResize("/data/pgdata", 20)]
        ),
    )
    await triggered(runner, 2)
    reason = "task 'Grow the filesystems' failed on web-1"
    await handle.signal(
        DeployWorkflow.pipeline_finished,
        PipelineFinished(False, {"web-1": {"failures": 1}}, reason, run=2),
    )
    failed = await wait_status(api, operator, done["id"], "failed")
    assert sizes(failed) == {"/data/pgdata": 20, "/data/pgwal": 5}  # no run made them
    # It served until the resize: kept until retried or destroyed, no retention to end it.
    assert failed["retained_until"] is None
    assert failed["allowed_operations"] == ["destroy", "retry"]
    rows = await history(api, operator, done["id"])
    assert rows[-1]["message"] == f"Resize failed: {reason}"
    requested = f"Resize requested: /data/pgwal 5→8 GB by {operator.username}"
    assert any(r["message"] == requested for r in rows)
    # Not from failed: a resize starts only from succeeded.
    cause = await refusal(client, done, DiskResize("/data/pgwal", 9))
    assert cause.type == OPERATION_REFUSED
    assert cause.message == (
        "the deployment is failed: only a succeeded deployment can be resized or reconfigured"
    )

    assert (await operate(api, operator, done["id"], "retry")).status_code == 202
    await triggered(runner, 3)
    assert (runner.triggers[2].action, runner.triggers[2].run) == (RunAction.DEPLOY, 3)
    assert run_sizes(runner, 2) == {"/data/pgdata": 20, "/data/pgwal": 8}
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=3))
    retried = await wait_status(api, operator, done["id"], "succeeded")
    assert sizes(retried) == {"/data/pgdata": 20, "/data/pgwal": 8}


async def test_a_refused_resize_leaves_no_trace(
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
    queued = await refusal(client, created, DiskResize("/data/pgdata", 40))
    assert queued.type == OPERATION_REFUSED
    assert (
        queued.message
        == "the deployment is queued: only a succeeded deployment can be resized or reconfigured"
    )

    await handle_of(client, created).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=1)
    )
    done = await wait_status(api, operator, created["id"], "succeeded")
    shrink = await refusal(
        client, done, DiskResize("/data/pgdata", 40), DiskResize("/data/pgwal", 4)
    )
    assert shrink.type == CHANGE_REFUSED
    assert [e["loc"] for e in shrink.details[0]] == [["body", "disk_allocations", 1, "size_gb"]]
    assert "/data/pgwal" in shrink.message
    unknown = await refusal(client, done, DiskResize("/data/other", 40))
    assert unknown.details[0][0]["msg"] == "matches no disk of this deployment"
    same = await refusal(client, done, DiskResize("/data/pgdata", 20))
    assert same.details[0][0]["type"] == "unchanged"
    twice = await refusal(
        client, done, DiskResize("/data/pgdata", 40), DiskResize("/data/pgdata", 50)
    )
    assert twice.details[0][0]["type"] == "duplicate"

    recorded = await handle_of(client, done).fetch_history()
    kinds = {EventType.Name(event.event_type) for event in recorded.events}
    assert not {kind for kind in kinds if "UPDATE" in kind}, kinds
    assert len(runner.triggers) == 1
    detail = (await api.get(f"/api/deployments/{done['id']}", headers=operator.headers)).json()
    assert detail["status"] == "succeeded"
    assert sizes(detail) == {"/data/pgdata": 20, "/data/pgwal": 5}


async def test_the_new_sizes_are_carried_across_continue_as_new(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    runner: RecordingRunnerDouble,
    settings: Any,
) -> None:
    operator = await make_user("operator")
    settings.workflow_max_history_events = 30  # the API starts runs with this bound
    done = await succeeded(api, client, operator, await make_template())
    handle = handle_of(client, done)
    await handle.execute_update(
        DeployWorkflow.change,
        ChangeRequest(operator.username, [DiskResize("/data/pgdata", 40)]),
    )
    await triggered(runner, 2)
    await handle.signal(DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2))
    await wait_status(api, operator, done["id"], "succeeded")

    async def carried() -> bool:
        """The latest run started from a continue-as-new after the resize: its input carries
        the deployment with the new size."""
        recorded = await client.get_workflow_handle(done["workflow_id"]).fetch_history()
        started = recorded.events[0].workflow_execution_started_event_attributes
        (request,) = await client.data_converter.decode(started.input.payloads, [DeployRequest])
        if request.resume is None:
            return False
        return {d.mount_point: d.size_gb for d in request.resume.deployment.disks} == {
            "/data/pgdata": 40,
            "/data/pgwal": 5,
        }

    await wait_for(carried)
    # The new run holds the new sizes: 40 is the floor of another resize, and the destroy's
    # run is given them.
    cause = await refusal(client, done, DiskResize("/data/pgdata", 30))
    assert cause.type == CHANGE_REFUSED and "is 40 GB" in cause.message
    assert (await operate(api, operator, done["id"], "destroy")).status_code == 202
    await triggered(runner, 3)
    assert runner.triggers[2].action == RunAction.DESTROY
    assert run_sizes(runner, 2) == {"/data/pgdata": 40, "/data/pgwal": 5}
