"""The audit trail of operations on deployments (launch, cancel, destroy, retry, change, lease),
over HTTP against the real Temporal server and PostgreSQL with the worker (the runner double;
the test sends the callback's signals): one entry per operation that ran, with who, from where
and the deployment before → after; none for a refusal; none more for a retry with the same
Idempotency-Key; no secret in any entry."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client

from db.audit import AuditEntry
from db.session import SessionMaker
from tests.api.test_leases_api import DAY, HOUR, extend
from tests.api.test_leases_api import succeeded as succeeded_named
from tests.api.test_reconfigure_api import configurable_template
from tests.api.test_resize_api import bounded_template, patch
from tests.workflows.test_deploy_flow import create, wait_status
from tests.workflows.test_lease_time_skipping import leased_template
from tests.workflows.test_lifecycle import handle_of, operate, succeeded
from vocabulary.contracts import PipelineFinished
from workflows.deploy import DeployWorkflow


async def trail(sessionmaker: SessionMaker, deployment_id: int) -> list[AuditEntry]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.target_type == "deployment", AuditEntry.target_id == deployment_id)
            .order_by(AuditEntry.id)
        )
        return list(rows)


def actions(entries: list[AuditEntry]) -> list[str]:
    return [entry.action for entry in entries]


async def test_launch_and_cancel_once_each_however_often_sent_and_no_entry_when_refused(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator, admin = await make_user("operator"), await make_user("admin")
    template_id = await make_template()
    body = {"template_id": template_id, "deployment_name": "pg-audit"}
    keyed = {**operator.headers, "Idempotency-Key": "launch-1"}
    first = await api.post("/api/deployments", json=body, headers=keyed)
    again = await api.post("/api/deployments", json=body, headers=keyed)
    assert first.status_code == again.status_code == 201
    created = first.json()
    assert again.json()["id"] == created["id"]
    await wait_status(api, operator, created["id"], "queued")

    refused = await operate(api, operator, created["id"], "destroy")
    assert refused.status_code == 409
    assert actions(await trail(sessionmaker, created["id"])) == ["deployment.launch"]

    for _ in range(2):
        answer = await operate(api, admin, created["id"], "cancel", **{"Idempotency-Key": "c-1"})
        assert answer.status_code == 202, answer.text
    assert (await operate(api, operator, created["id"], "retry")).status_code == 409

    launch, cancel = await trail(sessionmaker, created["id"])
    assert (launch.action, launch.actor_id, launch.actor_username, launch.actor_role) == (
        "deployment.launch",
        operator.id,
        operator.username,
        "operator",
    )
    assert launch.address == cancel.address == "127.0.0.1"
    assert launch.before is None
    assert launch.after["name"] == "pg-audit" and launch.after["status"] == "pending"
    assert launch.after["disks"] == {
        "/data/pgdata": {"size_gb": 20, "filesystem_type": "ext4"},
        "/data/pgwal": {"size_gb": 5, "filesystem_type": "xfs"},
    }
    assert (cancel.action, cancel.actor_id, cancel.actor_role) == (
        "deployment.cancel",
        admin.id,
        "admin",
    )
    assert (cancel.before["status"], cancel.after["status"]) == ("queued", "cancelling")

    # The API answers the same rows, newest first, filtered by the deployment.
    response = await api.get(
        "/api/audit",
        params={"target_type": "deployment", "target_id": created["id"]},
        headers=admin.headers,
    )
    assert [r["action"] for r in response.json()["items"]] == [
        "deployment.cancel",
        "deployment.launch",
    ]


async def test_destroy_and_retry_each_leave_one_entry(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    make_template: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator = await make_user("operator")
    template_id = await make_template()
    done = await succeeded(api, client, operator, template_id)
    for _ in range(2):
        answer = await operate(api, operator, done["id"], "destroy", **{"Idempotency-Key": "d"})
        assert answer.status_code == 202
    (_, destroy) = await trail(sessionmaker, done["id"])
    assert destroy.action == "deployment.destroy"
    assert (destroy.before["status"], destroy.after["status"]) == ("succeeded", "destroying")

    failing = await create(api, operator, template_id, deployment_name="pg-two")
    await wait_status(api, operator, failing["id"], "queued")
    await handle_of(client, failing).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(False, {}, "task failed", run=1)
    )
    await wait_status(api, operator, failing["id"], "failed")
    retried = await operate(api, operator, failing["id"], "retry")  # no key: one entry still
    assert retried.status_code == 202
    assert (await operate(api, operator, failing["id"], "retry")).status_code == 409
    (_, retry) = await trail(sessionmaker, failing["id"])
    assert retry.action == "deployment.retry" and retry.actor_id == operator.id
    assert (retry.before["status"], retry.before["attempt"]) == ("failed", 1)
    assert (retry.after["status"], retry.after["attempt"]) == ("provisioning", 2)


async def test_a_change_records_what_was_asked_with_its_secrets_masked(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    template_id = await configurable_template(api, admin)
    launched = await create(
        api,
        owner,
        template_id,
        deployment_name="pg-secret",
        configuration={"admin_password": "launch-password-1", "replica_key": "rk-launch"},
    )
    # The launch's own answer shows its secrets masked, like every read after it.
    assert launched["configuration"]["admin_password"] == "********"
    assert launched["configuration"]["replica_key"] == "********"
    assert launched["configuration"]["port"] == 5432
    await wait_status(api, owner, launched["id"], "queued")
    await handle_of(client, launched).signal(
        DeployWorkflow.pipeline_finished, PipelineFinished(True, {}, run=1)
    )
    await wait_status(api, owner, launched["id"], "succeeded")

    shrink = await patch(api, owner, launched["id"], ("/data/db", 5))
    assert shrink.status_code == 422
    change = {
        "disk_allocations": [{"mount_point": "/data/db", "size_gb": 20}],
        "configuration": {
            "port": 6432,
            "replica_key": "rk-changed",
            "admin_password": "pw-new-password-12",
        },
    }
    for _ in range(2):
        answer = await api.patch(
            f"/api/deployments/{launched['id']}",
            json=change,
            headers={**owner.headers, "Idempotency-Key": "change-1"},
        )
        assert answer.status_code == 202, answer.text

    launch, changed = await trail(sessionmaker, launched["id"])
    assert changed.action == "deployment.change" and changed.actor_id == owner.id
    assert changed.before["status"] == "succeeded" and changed.after["status"] == "updating"
    assert changed.before["disks"]["/data/db"]["size_gb"] == 10
    assert changed.after["disks"]["/data/db"]["size_gb"] == 20
    assert changed.before["configuration"]["port"] == 5432
    assert changed.after["configuration"]["port"] == 6432
    for entry in (launch, changed):
        for side in (entry.before, entry.after):
            if side is not None:
                assert side["configuration"]["replica_key"] == "********"
                assert side["configuration"]["admin_password"] == "********"

    # No secret of the template's, the launch's or the change's in any entry.
    async with sessionmaker() as session:
        everything = list(await session.scalars(select(AuditEntry)))
    raw = json.dumps([[e.before, e.after] for e in everything])
    for secret in (
        "first-password-1",
        "rk-first",
        "launch-password-1",
        "rk-launch",
        "rk-changed",
        "pw-new-password-12",
    ):
        assert secret not in raw
    assert "template.create" in [e.action for e in everything]


async def test_a_resize_and_a_lease_extension_once_per_key(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    done = await succeeded(api, client, owner, await bounded_template(api, admin))
    over_cap = await patch(api, owner, done["id"], ("/data/db", 50), ("/data/wal", 20))
    assert over_cap.status_code == 422
    for _ in range(2):
        grown = await patch(api, owner, done["id"], ("/data/db", 30), **{"Idempotency-Key": "g"})
        assert grown.status_code == 202
    (_, resize) = await trail(sessionmaker, done["id"])
    assert resize.action == "deployment.change"
    assert resize.after["disks"]["/data/db"]["size_gb"] == 30
    assert resize.after["disks"]["/data/wal"]["size_gb"] == 5

    lease_template = await leased_template(api, admin, lease_s=DAY, max_lease_s=3 * DAY)
    leased = await succeeded_named(api, client, owner, lease_template, "pg-leased")
    too_far = await extend(api, owner, leased["id"], {"extend_s": 5 * DAY})
    assert too_far.status_code == 422
    keyed = {**admin.headers, "Idempotency-Key": "lease-1"}
    for _ in range(2):
        answer = await api.post(
            f"/api/deployments/{leased['id']}/lease", json={"extend_s": HOUR}, headers=keyed
        )
        assert answer.status_code == 200, answer.text
    (_, lease) = await trail(sessionmaker, leased["id"])
    assert (lease.action, lease.actor_id) == ("deployment.lease", admin.id)
    before, after = (datetime.fromisoformat(e["expires_at"]) for e in (lease.before, lease.after))
    assert before == datetime.fromisoformat(leased["expires_at"])
    assert after - before == timedelta(seconds=HOUR)
