"""A short lease on real parts: HTTP API → DeployWorkflow → local runner → ansible-playbook with
the directory backend (loop-mounted image files). The lease ends, the workflow destroys the
deployment on its own, and nothing of it is left."""

from __future__ import annotations

from typing import Any

import httpx

from db.models import Template, TemplateDiskAllocation
from db.session import SessionMaker
from pipeline.local_runner import LocalRunner
from settings import Settings
from tests.e2e.test_lifecycle_e2e import (
    assert_nothing_left,
    launch,
    local_settings,
    real_worker,
    status_of,
)

__all__ = ["local_settings", "real_worker"]  # fixtures, used by name
LEASE_S = 20


async def leased_small_template(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        template = Template(
            name="small-leased",
            service_type="postgresql",
            configuration={"max_connections": 100, "provisio": {"lease_s": LEASE_S}},
            disk_allocations=[
                TemplateDiskAllocation(
                    disk_type="ssd",
                    size_gb=1,
                    mount_point="/data/pgdata",
                    volume_group="vg_data",
                    logical_volume="lv_0",
                    filesystem_type="ext4",
                )
            ],
        )
        session.add(template)
        await session.flush()
        return template.id


async def test_a_short_lease_ends_in_a_destroy_that_leaves_nothing(
    live_api: str,
    real_worker: LocalRunner,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator = await make_user("operator")
    template_id = await leased_small_template(sessionmaker)
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await launch(http, operator, template_id, "pg-brief")
        destroyed = await status_of(http, operator, created["id"], "destroyed", "failed")
        history = (
            await http.get(f"/api/deployments/{created['id']}/history", headers=operator.headers)
        ).json()
    messages = [row["message"] for row in history]
    assert destroyed["status"] == "destroyed", messages
    assert destroyed["expires_at"] is None
    built, expired = (
        messages.index("Deployment succeeded"),
        messages.index("Destroy: its lease expired"),
    )
    assert built < expired
    assert messages[-1] == "Deployment destroyed (its lease expired); nothing of it is left"
    await assert_nothing_left(local_settings, real_worker, destroyed)
