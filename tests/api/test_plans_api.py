"""Plans on demand over HTTP, with the real API, PostgreSQL, Temporal server and worker (the
runner double): what a launch or a change would do, checked as the launch or the PATCH is, with
nothing written, reserved or sent."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.client import Client

from tests.api.test_reconfigure_api import configurable_template
from tests.doubles import RecordingRunnerDouble
from tests.workflows.test_deploy_flow import create, history, wait_status
from tests.workflows.test_lifecycle import succeeded


async def test_a_launch_plan_lists_each_disk_and_value_and_writes_nothing(
    api: httpx.AsyncClient,
    worker: None,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, operator = await make_user("admin"), await make_user("operator")
    template_id = await configurable_template(api, admin)
    body = {
        "template_id": template_id,
        "deployment_name": "pg-planned",
        "configuration": {"port": 6000, "admin_password": "a-long-password-9"},
        "disk_allocations": [{"mount_point": "/data/db", "size_gb": 30}],
    }
    plan = await api.post("/api/deployments/plan", json=body, headers=operator.headers)
    assert plan.status_code == 200, plan.text
    assert plan.json() == {
        "template": {"id": template_id, "name": "configurable-db", "version": 1},
        "deployment_name": "pg-planned",
        "disks": [
            {
                "mount_point": "/data/db",
                "size_gb": 30,
                "filesystem_type": "ext4",
                "volume_group": "vg_data",
                "logical_volume": "lv_db",
                "disk_type": "ssd",
            }
        ],
        "configuration": {
            "admin_password": "********",
            "log_level": "info",
            "port": 6000,
            "replica_key": "********",
        },
        "requires_approval": False,
        "lease_s": None,
    }
    invalid = await api.post(
        "/api/deployments/plan",
        json={**body, "disk_allocations": [{"mount_point": "/data/db", "size_gb": 51}]},
        headers=operator.headers,
    )
    assert invalid.status_code == 422, invalid.text
    viewer = await make_user("viewer")
    assert (
        await api.post("/api/deployments/plan", json=body, headers=viewer.headers)
    ).status_code == 403
    listed = await api.get("/api/deployments", headers=operator.headers)
    assert listed.json()["items"] == []
    assert runner.triggers == []


async def test_a_change_plan_says_old_and_new_and_sends_nothing(
    api: httpx.AsyncClient,
    worker: None,
    client: Client,
    make_user: Any,
    runner: RecordingRunnerDouble,
) -> None:
    admin, owner = await make_user("admin"), await make_user("operator")
    template_id = await configurable_template(api, admin)
    done = await succeeded(api, client, owner, template_id)
    body = {
        "disk_allocations": [{"mount_point": "/data/db", "size_gb": 20}],
        "configuration": {"port": 6432, "log_level": "info", "admin_password": "new-password-12"},
    }
    url = f"/api/deployments/{done['id']}/plan"
    plan = await api.post(url, json=body, headers=owner.headers)
    assert plan.status_code == 200, plan.text
    assert plan.json() == {
        "deployment_id": done["id"],
        "status": "succeeded",
        "applicable": True,
        "refusal": None,
        "disks": [{"mount_point": "/data/db", "old_gb": 10, "new_gb": 20}],
        "configuration": [
            {"key": "admin_password", "old": "********", "new": "********"},
            {"key": "port", "old": 5432, "new": 6432},
        ],
    }
    same = await api.post(url, json={"configuration": {"port": 5432}}, headers=owner.headers)
    assert same.json()["applicable"] is False
    assert same.json()["refusal"].startswith("nothing to change")
    shrink = await api.post(
        url, json={"disk_allocations": [{"mount_point": "/data/db", "size_gb": 5}]},
        headers=owner.headers,
    )  # fmt: skip
    assert shrink.status_code == 422, shrink.text
    other = await make_user("operator")
    assert (await api.post(url, json=body, headers=other.headers)).status_code == 404

    detail = (await api.get(f"/api/deployments/{done['id']}", headers=owner.headers)).json()
    assert detail["status"] == "succeeded"
    assert [d["size_gb"] for d in detail["disk_allocations"]] == [10]
    assert len(runner.triggers) == 1
    assert not [r for r in await history(api, owner, done["id"]) if "requested" in r["message"]]

    # A deployment still being built gets its plan, marked not applicable now.
    queued = await create(api, owner, template_id, deployment_name="pg-queued")
    await wait_status(api, owner, queued["id"], "queued")
    later = await api.post(
        f"/api/deployments/{queued['id']}/plan", json=body, headers=owner.headers
    )
    assert later.status_code == 200, later.text
    assert later.json()["applicable"] is False
    assert "only a succeeded deployment" in later.json()["refusal"]
