"""Approvals over HTTP with the real API, PostgreSQL, Temporal server and worker (the runner
double): a launch of a template that requires approval plans (a check-mode run), waits in
`awaiting_approval` with its plan, and is built only when an admin other than the requester
approves; rejection, silence and a cancel build nothing."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from temporalio.client import Client

from db.session import SessionMaker
from settings import Settings
from tests.conftest import wait_for
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import create, history, wait_status
from tests.workflows.test_lifecycle import STATS, handle_of, operate, triggered
from vocabulary.contracts import PipelineFinished
from vocabulary.runs import RunAction
from worker import build_worker
from workflows.deploy import DeployWorkflow

PLAN_STATS = {"db-1": {"ok": 12, "changed": 1, "failures": 0}}


async def approval_template(api: httpx.AsyncClient, admin: Any, **provisio: Any) -> int:
    body = {
        "name": "pg-approved",
        "service_type": "postgresql",
        "configuration": {
            "max_connections": 100,
            "db_password": "a-secret-value",
            "provisio": {"requires_approval": True, **provisio},
        },
        "disk_allocations": [
            {
                "disk_type": "ssd",
                "size_gb": 20,
                "mount_point": "/data/pgdata",
                "volume_group": "vg_data",
                "logical_volume": "lv_pgdata",
                "filesystem_type": "xfs",
            }
        ],
    }
    response = await api.post("/api/templates", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def decide(
    api: httpx.AsyncClient, account: Any, deployment_id: int, decision: str, comment: str = ""
) -> httpx.Response:
    return await api.post(
        f"/api/deployments/{deployment_id}/{decision}",
        json={"comment": comment} if comment else {},
        headers=account.headers,
    )


async def planned(
    api: httpx.AsyncClient, client: Client, runner: RecordingRunnerDouble, account: Any,
    template_id: int,
) -> dict[str, Any]:  # fmt: skip
    """A launch whose plan run reported: awaiting approval with its plan."""
    runs_before = len(runner.triggers)
    created = await create(api, account, template_id)
    await triggered(runner, runs_before + 1)
    plan_run = runner.triggers[-1]
    assert (plan_run.action, plan_run.run) == (RunAction.PLAN, 1)
    await handle_of(client, created).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, PLAN_STATS, run=1)
    )

    async def plan_shown() -> Any:
        detail = await wait_status(api, account, created["id"], "awaiting_approval")
        return detail if detail["plan"] else None

    return await wait_for(plan_shown)


async def test_an_admin_other_than_the_requester_approves_and_it_is_built_as_planned(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, approver = await make_user("admin"), await make_user("admin")
    operator = await make_user("operator")
    template_id = await approval_template(api, admin)
    waiting = await planned(api, client, runner, operator, template_id)
    assert waiting["approval"] == {"state": "pending", "by": None, "at": None, "comment": None}
    assert waiting["plan"] == {
        "template": {"id": template_id, "name": "pg-approved", "version": 1},
        "hosts": ["db-1"],
        "disks": [
            {
                "mount_point": "/data/pgdata",
                "size_gb": 20,
                "filesystem_type": "xfs",
                "volume_group": "vg_data",
                "logical_volume": "lv_pgdata",
                "disk_type": "ssd",
            }
        ],
        "configuration": {"db_password": "********", "max_connections": 100},
    }
    assert waiting["allowed_operations"] == ["cancel"]
    assert len(runner.triggers) == 1  # only the plan: nothing built

    # The approvals page lists it, for admins only.
    listed = await api.get("/api/approvals", headers=approver.headers)
    assert [d["id"] for d in listed.json()] == [waiting["id"]]
    assert (await api.get("/api/approvals", headers=operator.headers)).status_code == 403

    assert (await decide(api, operator, waiting["id"], "approve")).status_code == 403  # a role
    approved = await decide(api, approver, waiting["id"], "approve", "capacity checked")
    assert approved.status_code == 202, approved.text
    assert approved.json()["status"] == "provisioning"
    approval = approved.json()["approval"]
    assert (approval["state"], approval["by"], approval["comment"]) == (
        "approved",
        approver.username,
        "capacity checked",
    )
    second = await decide(api, admin, waiting["id"], "reject")
    assert second.status_code == 409, second.text
    # One audit entry for the decision; none for the refusals.
    entries = (await api.get("/api/audit", headers=admin.headers)).json()["items"]
    decisions = [e for e in entries if e["action"] in ("deployment.approve", "deployment.reject")]
    assert len(decisions) == 1
    (entry,) = decisions
    assert (entry["action"], entry["actor"]["username"]) == (
        "deployment.approve",
        approver.username,
    )
    assert entry["target"] == {"type": "deployment", "id": waiting["id"]}
    assert entry["before"]["approval"]["state"] == "pending"
    assert entry["after"]["approval"]["state"] == "approved"
    assert entry["after"]["approval"]["comment"] == "capacity checked"

    await triggered(runner, 2)
    build = runner.triggers[1]
    assert (build.action, build.run) == (RunAction.DEPLOY, 2)
    # Exactly what was planned.
    planned_disks = waiting["plan"]["disks"]
    assert [
        {k: d[k] for k in planned_disks[0]} for d in build.variables["provisio_disks"]
    ] == planned_disks
    await handle_of(client, waiting).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
    )
    done = await wait_status(api, operator, waiting["id"], "succeeded")
    assert done["approval"]["state"] == "approved"
    messages = [r["message"] for r in await history(api, operator, waiting["id"])]
    assert "Awaiting approval: planning what it would build" in messages
    assert any(m.startswith("Plan ready (1 disks on db-1)") for m in messages)
    assert f"Approved by {approver.username}: capacity checked" in messages
    assert (await api.get("/api/approvals", headers=approver.headers)).json() == []


async def test_the_requester_cannot_decide_and_a_rejection_builds_nothing(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, other = await make_user("admin"), await make_user("admin")
    template_id = await approval_template(api, admin)
    waiting = await planned(api, client, runner, admin, template_id)  # an admin's own launch

    own = await decide(api, admin, waiting["id"], "approve")
    assert own.status_code == 403, own.text
    assert own.json()["detail"] == "the requester cannot approve or reject their own deployment"
    rejected = await decide(api, other, waiting["id"], "reject", "use the shared cluster")
    assert rejected.status_code == 202, rejected.text
    assert rejected.json()["status"] == "rejected"
    await handle_of(client, waiting).result()  # its workflow ended
    assert len(runner.triggers) == 1  # the plan only
    detail = (await api.get(f"/api/deployments/{waiting['id']}", headers=admin.headers)).json()
    assert detail["approval"]["state"] == "rejected"
    assert detail["allowed_operations"] == []
    rows = await history(api, admin, waiting["id"])
    assert rows[-1]["message"] == (
        f"Rejected by {other.username}: use the shared cluster; nothing was built"
    )
    again = await decide(api, other, waiting["id"], "approve")
    assert again.status_code == 409


async def test_no_decision_before_the_plan_and_silence_rejects(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, operator = await make_user("admin"), await make_user("operator")
    template_id = await approval_template(api, admin, approval_timeout_s=2)
    created = await create(api, operator, template_id)
    await triggered(runner, 1)
    early = await decide(api, admin, created["id"], "approve")
    assert early.status_code == 409, early.text
    assert "plan is still being made" in early.json()["detail"]
    await handle_of(client, created).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, PLAN_STATS, run=1)
    )
    expired = await wait_status(api, operator, created["id"], "rejected")
    assert expired["approval"]["state"] == "expired"
    rows = await history(api, operator, created["id"])
    assert rows[-1]["message"] == "Rejected: nobody approved it within 2 s; nothing was built"
    assert len(runner.triggers) == 1


async def test_a_cancel_while_awaiting_tears_nothing_down_and_a_failed_plan_plans_again(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, operator = await make_user("admin"), await make_user("operator")
    template_id = await approval_template(api, admin)
    waiting = await planned(api, client, runner, operator, template_id)
    assert (await operate(api, operator, waiting["id"], "cancel")).status_code == 202
    await wait_status(api, operator, waiting["id"], "cancelled")
    assert [t.action for t in runner.triggers] == [RunAction.PLAN]  # no teardown: nothing built

    failing = await create(api, operator, template_id, deployment_name="pg-two")
    await triggered(runner, 2)
    await handle_of(client, failing).signal(
        DeployWorkflow.pipeline_finished,
        PipelineFinished(False, {"db-1": {"failures": 1}}, "this host lacks mkfs.xfs", run=1),
    )
    failed = await wait_status(api, operator, failing["id"], "failed")
    assert failed["retained_until"] is None  # nothing was built: nothing to keep
    rows = await history(api, operator, failing["id"])
    assert rows[-1]["message"] == "Plan failed: this host lacks mkfs.xfs; nothing was built"
    assert (await operate(api, operator, failing["id"], "retry")).status_code == 202
    await triggered(runner, 3)
    assert (runner.triggers[2].action, runner.triggers[2].run) == (RunAction.PLAN, 2)
    await wait_status(api, operator, failing["id"], "awaiting_approval")


async def test_a_deployment_waiting_for_approval_outlives_its_worker(
    api: httpx.AsyncClient,
    client: Client,
    settings: Settings,
    sessionmaker: SessionMaker,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    """Planned under one worker, decided while none runs, built by the next: the wait is the
    workflow's, not a worker's."""
    admin, approver = await make_user("admin"), await make_user("admin")
    operator = await make_user("operator")
    template_id = await approval_template(api, admin)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            waiting = await planned(api, client, runner, operator, template_id)

    # No worker: the approve Update is not even accepted (a validator needs a worker) until
    # one runs again; the API's call waits for it.
    decision = asyncio.ensure_future(decide(api, approver, waiting["id"], "approve", "go"))
    await asyncio.sleep(2)
    assert not decision.done()
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            approved = await decision
            assert approved.status_code == 202, approved.text
            await triggered(runner, 2)
            assert runner.triggers[1].action == RunAction.DEPLOY
            await handle_of(client, waiting).signal(
                DeployWorkflow.pipeline_finished, PipelineFinished(True, STATS, run=2)
            )
            done = await wait_status(api, operator, waiting["id"], "succeeded")
    assert done["approval"]["state"] == "approved"
    assert done["plan"] == waiting["plan"]


async def test_a_plan_whose_template_changed_since_is_stale(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, approver = await make_user("admin"), await make_user("admin")
    operator = await make_user("operator")
    template_id = await approval_template(api, admin)
    waiting = await planned(api, client, runner, operator, template_id)

    newer = await approval_template(api, admin)  # the same name: version 2
    assert newer != template_id
    stale = await decide(api, approver, waiting["id"], "approve")
    assert stale.status_code == 409, stale.text
    assert stale.json()["detail"] == (
        "the plan is stale: template pg-approved has version 2 since (the plan builds version "
        "1); reject it, and launch again"
    )
    deactivated = await api.post(f"/api/templates/{newer}/deactivate", headers=admin.headers)
    assert deactivated.status_code == 200, deactivated.text
    # Version 2 withdrawn, version 1 stands again: its plan is current.
    approved = await decide(api, approver, waiting["id"], "approve")
    assert approved.status_code == 202, approved.text
    assert len(runner.triggers) >= 1
