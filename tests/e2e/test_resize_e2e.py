"""Resize on real parts: HTTP API → DeployWorkflow → local runner → ansible-playbook
(deploy.yml, directory backend with real loop mounts) → signed callbacks. A file written on the
mounted disk before the resize is still there after it, and the filesystem is bigger; then the
deployment is destroyed and nothing is left."""

from __future__ import annotations

import os
from pathlib import Path
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
from tests.playbooks.support import GIB
from tests.playbooks.test_deploy_playbook import CAN_LOOP_MOUNT, LOOP_MOUNT_SKIP
from tests.playbooks.test_lvm_filesystem_grow import CAP_SYS_RESOURCE, has_capability

__all__ = ["local_settings", "real_worker"]  # fixtures, used by name

pytestmark = pytest.mark.skipif(not CAN_LOOP_MOUNT, reason=LOOP_MOUNT_SKIP)

FILESYSTEMS = [
    pytest.param(
        "ext4",
        marks=pytest.mark.skipif(
            not has_capability(CAP_SYS_RESOURCE),
            reason="growing a mounted ext4 (resize2fs's resize ioctl) needs CAP_SYS_RESOURCE, "
            "which root lacks on this machine",
        ),
    ),
    "xfs",
]
MARKER = b"written before the resize\n"


async def one_disk_template(sessionmaker: SessionMaker, filesystem: str) -> int:
    async with sessionmaker.begin() as session:
        template = Template(
            name=f"growing-{filesystem}",
            service_type="postgresql",
            configuration={"max_connections": 100},
            disk_allocations=[
                TemplateDiskAllocation(
                    disk_type="ssd",
                    size_gb=1,
                    mount_point="/data/pgdata",
                    volume_group="vg_data",
                    logical_volume="lv_data",
                    filesystem_type=filesystem,
                )
            ],
        )
        session.add(template)
        await session.flush()
        return template.id


def filesystem_bytes(mount_point: Path) -> int:
    stat = os.statvfs(mount_point)
    return stat.f_blocks * stat.f_frsize


@pytest.mark.parametrize("filesystem", FILESYSTEMS)
async def test_a_resize_grows_the_mounted_filesystem_and_keeps_its_files(
    live_api: str,
    real_worker: LocalRunner,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
    filesystem: str,
) -> None:
    operator = await make_user("operator")
    template_id = await one_disk_template(sessionmaker, filesystem)
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await launch(http, operator, template_id, f"grow-{filesystem}")
        done = await status_of(http, operator, created["id"], "succeeded", "failed")
        assert done["status"] == "succeeded", done
        mount_point = local_settings.sandbox_root / str(created["id"]) / "data" / "pgdata"
        (mount_point / "marker").write_bytes(MARKER)
        os.sync()
        before = filesystem_bytes(mount_point)
        assert before <= GIB

        answer = await http.patch(
            f"/api/deployments/{created['id']}",
            json={"disk_allocations": [{"mount_point": "/data/pgdata", "size_gb": 3}]},
            headers=operator.headers,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "updating"
        grown = await status_of(http, operator, created["id"], "succeeded", "failed")
        assert grown["status"] == "succeeded", grown
        assert [d["size_gb"] for d in grown["disk_allocations"]] == [3]

        assert (mount_point / "marker").read_bytes() == MARKER
        after = filesystem_bytes(mount_point)
        assert after > 2 * GIB, (before, after)
        rows = (
            await http.get(f"/api/deployments/{created['id']}/history", headers=operator.headers)
        ).json()
        messages = [row["message"] for row in rows]
        assert f"Resize requested: /data/pgdata 1→3 GB by {operator.username}" in messages
        assert messages[-1] == "Resize succeeded: /data/pgdata 3 GB"

        destroy = await http.post(
            f"/api/deployments/{created['id']}/destroy", headers=operator.headers
        )
        assert destroy.status_code == 202, destroy.text
        destroyed = await status_of(http, operator, created["id"], "destroyed", "failed")
        assert destroyed["status"] == "destroyed", destroyed
        await assert_nothing_left(local_settings, real_worker, destroyed)
