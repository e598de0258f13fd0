"""Approval on real parts: HTTP API → DeployWorkflow → local runner → ansible-playbook in check
mode (the plan), then for real once approved → signed callbacks. The plan names the host it ran
on and each disk, and builds nothing; a rejected deployment leaves nothing either."""

from __future__ import annotations

from typing import Any

import httpx

from db.models import Template, TemplateDiskAllocation
from db.session import SessionMaker
from pipeline.local_runner import LocalRunner
from settings import Settings
from tests.conftest import wait_for
from tests.e2e.test_lifecycle_e2e import (
    assert_nothing_left,
    launch,
    local_settings,
    real_worker,
    status_of,
)

__all__ = ["local_settings", "real_worker"]  # fixtures, used by name


async def approval_template(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        template = Template(
            name="approved-db",
            service_type="postgresql",
            configuration={"max_connections": 100, "provisio": {"requires_approval": True}},
            disk_allocations=[
                TemplateDiskAllocation(
                    disk_type="ssd",
                    size_gb=1,
                    mount_point="/data/pgdata",
                    volume_group="vg_data",
                    logical_volume="lv_data",
                    filesystem_type="ext4",
                )
            ],
        )
        session.add(template)
        await session.flush()
        return template.id


async def plan_of(http: httpx.AsyncClient, account: Any, deployment_id: int) -> Any:
    """The detail once the plan is shown (or the plan failed)."""

    async def planned() -> Any:
        url = f"/api/deployments/{deployment_id}"
        detail = (await http.get(url, headers=account.headers)).json()
        return detail if detail["plan"] or detail["status"] == "failed" else None

    detail = await wait_for(planned, timeout_s=180, interval_s=0.5)
    assert detail["status"] == "awaiting_approval", detail
    return detail


async def test_the_plan_runs_in_check_mode_and_the_approved_build_matches_it(
    live_api: str,
    real_worker: LocalRunner,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator, admin = await make_user("operator"), await make_user("admin")
    template_id = await approval_template(sessionmaker)
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await launch(http, operator, template_id, "approved-db")
        waiting = await plan_of(http, operator, created["id"])
        assert waiting["plan"]["hosts"] == ["localhost"]
        assert [d["mount_point"] for d in waiting["plan"]["disks"]] == ["/data/pgdata"]
        sandbox = local_settings.sandbox_root / str(created["id"])
        assert not sandbox.exists()  # the plan built nothing
        rows = (
            await http.get(f"/api/deployments/{created['id']}/history", headers=operator.headers)
        ).json()
        shown = [
            message
            for row in rows
            if row["details"].get("task") == "disk : Show the plan"
            and (message := (row["details"].get("data") or {}).get("msg"))
        ]
        assert shown == ["/data/pgdata: create vg_data/lv_data, 1 GiB ext4"], rows

        approved = await http.post(
            f"/api/deployments/{created['id']}/approve", json={}, headers=admin.headers
        )
        assert approved.status_code == 202, approved.text
        done = await status_of(http, operator, created["id"], "succeeded", "failed")
        assert done["status"] == "succeeded", done
        assert (sandbox / "data" / "pgdata").is_dir()

        destroy = await http.post(
            f"/api/deployments/{created['id']}/destroy", headers=operator.headers
        )
        assert destroy.status_code == 202, destroy.text
        destroyed = await status_of(http, operator, created["id"], "destroyed", "failed")
        assert destroyed["status"] == "destroyed", destroyed
        await assert_nothing_left(local_settings, real_worker, destroyed)


async def test_a_rejected_deployment_built_nothing(
    live_api: str,
    real_worker: LocalRunner,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator, admin = await make_user("operator"), await make_user("admin")
    template_id = await approval_template(sessionmaker)
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await launch(http, operator, template_id, "rejected-db")
        await plan_of(http, operator, created["id"])
        rejected = await http.post(
            f"/api/deployments/{created['id']}/reject",
            json={"comment": "not this quarter"},
            headers=admin.headers,
        )
        assert rejected.status_code == 202, rejected.text
        assert rejected.json()["status"] == "rejected"
        assert not (local_settings.sandbox_root / str(created["id"])).exists()
