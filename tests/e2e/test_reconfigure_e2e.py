"""Reconfigure on real parts: HTTP API → DeployWorkflow → local runner → ansible-playbook
(deploy.yml, directory backend) → signed callbacks. The deployment's manifest on the host holds
the new values after the change (the playbook ran with them); history shows old → new with the
secret masked; destroy leaves nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

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
from tests.playbooks.test_deploy_playbook import CAN_LOOP_MOUNT, LOOP_MOUNT_SKIP

__all__ = ["local_settings", "real_worker"]  # fixtures, used by name

pytestmark = pytest.mark.skipif(not CAN_LOOP_MOUNT, reason=LOOP_MOUNT_SKIP)


async def configurable_template(sessionmaker: SessionMaker) -> int:
    async with sessionmaker.begin() as session:
        template = Template(
            name="reconfigurable",
            service_type="postgresql",
            configuration={
                "max_connections": 100,
                "db_password": "first-secret-value",
                "provisio": {
                    "overrides": {
                        "max_connections": {"type": "integer", "minimum": 10, "maximum": 500},
                        "db_password": {"type": "string", "minLength": 12},
                    }
                },
            },
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


async def test_a_reconfiguration_reaches_the_host_and_history_masks_the_secret(
    live_api: str,
    real_worker: LocalRunner,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator = await make_user("operator")
    template_id = await configurable_template(sessionmaker)
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await launch(http, operator, template_id, "reconfigured")
        done = await status_of(http, operator, created["id"], "succeeded", "failed")
        assert done["status"] == "succeeded", done
        manifest = (
            local_settings.sandbox_root / str(created["id"]) / ".provisio" / "deployment.json"
        )
        before = json.loads(manifest.read_text())["deployment"]["configuration"]
        assert before["max_connections"] == 100

        answer = await http.patch(
            f"/api/deployments/{created['id']}",
            json={"configuration": {"max_connections": 250, "db_password": "second-secret-val"}},
            headers=operator.headers,
        )
        assert answer.status_code == 202, answer.text
        changed = await status_of(http, operator, created["id"], "succeeded", "failed")
        assert changed["status"] == "succeeded", changed
        assert changed["configuration"]["max_connections"] == 250

        after = json.loads(manifest.read_text())["deployment"]["configuration"]
        assert after["max_connections"] == 250
        assert after["db_password"] == "second-secret-val"
        rows = (
            await http.get(f"/api/deployments/{created['id']}/history", headers=operator.headers)
        ).json()
        messages = [row["message"] for row in rows]
        assert (
            "Configuration change requested: db_password ********→********, max_connections "
            f"100→250 by {operator.username}"
        ) in messages
        assert messages[-1] == "Configuration change succeeded: db_password, max_connections set"
        assert "second-secret-val" not in json.dumps(rows)

        destroy = await http.post(
            f"/api/deployments/{created['id']}/destroy", headers=operator.headers
        )
        assert destroy.status_code == 202, destroy.text
        destroyed = await status_of(http, operator, created["id"], "destroyed", "failed")
        assert destroyed["status"] == "destroyed", destroyed
        await assert_nothing_left(local_settings, real_worker, destroyed)
