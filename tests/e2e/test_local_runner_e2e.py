"""End to end on real parts: HTTP API → DeployWorkflow → local runner (ansible-runner) →
ansible-playbook with the directory backend → signed callback plugin → API → signal → result."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from db.models import Template, TemplateDiskAllocation
from db.session import SessionMaker
from pipeline.local_runner import LocalRunner
from settings import Settings
from tests.conftest import wait_for
from worker import build_worker


@pytest.fixture
def local_settings(settings: Settings, tmp_path: Path) -> Settings:
    settings.runner_dir = tmp_path / "runs"
    settings.sandbox_root = tmp_path / "sandbox"
    settings.disk_backend = "directory"
    settings.default_callback_timeout_s = 240
    return settings


@pytest.fixture
async def local_worker(
    client: Client, local_settings: Settings, sessionmaker: SessionMaker
) -> AsyncIterator[LocalRunner]:
    runner = LocalRunner(local_settings)
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, local_settings, sessionmaker, runner, executor):
            yield runner


async def _small_template(sessionmaker: SessionMaker, mount_points: list[str]) -> int:
    async with sessionmaker.begin() as session:
        template = Template(
            name="small-disks",
            service_type="postgresql",
            configuration={"max_connections": 100},
            disk_allocations=[
                TemplateDiskAllocation(
                    disk_type="ssd",
                    size_gb=1,
                    mount_point=mount,
                    volume_group="vg_data",
                    logical_volume=f"lv_{index}",
                    filesystem_type="ext4",
                )
                for index, mount in enumerate(mount_points)
            ],
        )
        session.add(template)
        await session.flush()
        return template.id


async def _final(http: httpx.AsyncClient, account: Any, deployment_id: int) -> Any:
    async def done() -> Any:
        body = (await http.get(f"/api/deployments/{deployment_id}", headers=account.headers)).json()
        return body if body["status"] in ("succeeded", "failed", "timed_out") else None

    return await wait_for(done, timeout_s=180, interval_s=0.5)


async def test_deployment_runs_the_real_playbook_and_reports_through_the_plugin(
    live_api: str,
    local_worker: LocalRunner,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator = await make_user("operator")
    template_id = await _small_template(sessionmaker, ["/data/pgdata", "/data/pgwal"])
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await http.post(
            "/api/deployments",
            json={
                "template_id": template_id,
                "deployment_name": "pg-real",
                "disk_allocations": [{"mount_point": "/data/pgwal", "size_gb": 2}],
            },
            headers=operator.headers,
        )
        assert created.status_code == 201, created.text
        deployment_id = created.json()["id"]
        final = await _final(http, operator, deployment_id)
        history = (
            await http.get(f"/api/deployments/{deployment_id}/history", headers=operator.headers)
        ).json()

    messages = [row["message"] for row in history]
    assert final["status"] == "succeeded", messages
    assert final["jenkins_job_id"] == f"local-{deployment_id}-1"
    # Every workflow step once, in order, with the playbook's own events in between.
    steps = [m for m in messages if m in ("Deployment created", "Deployment succeeded")]
    assert steps == ["Deployment created", "Deployment succeeded"]
    assert messages.count("Playbook finished") == 1
    assert any(m.startswith("ok: localhost") for m in messages)
    counters = [row["details"]["counter"] for row in history if "counter" in row["details"]]
    assert counters == sorted(counters) and len(counters) == len(set(counters))
    stats = history[-1]["details"]["stats"]
    assert stats["localhost"]["failures"] == 0

    # The directory backend made real filesystems of the allocated sizes.
    root = local_settings.sandbox_root / str(deployment_id)
    images = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size >= 2**30)
    assert sorted(p.stat().st_size for p in images) == [2**30, 2 * 2**30]
    for image in images:
        kind = subprocess.run(
            ["blkid", "-o", "value", "-s", "TYPE", str(image)], capture_output=True, text=True
        )
        assert kind.stdout.strip() == "ext4"
