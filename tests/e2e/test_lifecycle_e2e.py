"""The life of a deployment on real parts: HTTP API → DeployWorkflow → local runner →
ansible-playbook (deploy.yml, destroy.yml) with the directory backend → signed callbacks.

Every test ends with the leak check: a cancelled or destroyed deployment leaves no image file,
no directory and no mount in the sandbox, and no process of any of its runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from db.session import SessionMaker
from pipeline.local_runner import LocalRunner
from settings import Settings
from tests.conftest import wait_for
from tests.e2e.test_local_runner_e2e import _small_template
from tests.playbooks.test_deploy_playbook import unmount_below
from vocabulary.runs import RunRef
from worker import build_worker

REPO = Path(__file__).resolve().parents[2]
# Appended to a copy of deploy.yml: a deployment that blocks mid-playbook, or fails after its
# disks were built.
BLOCKING_PLAY = """
- name: Wait for a cancel
  hosts: all
  gather_facts: false
  tasks:
    - name: Block until the run is cancelled
      ansible.builtin.command:
        argv: [sleep, "600"]
      changed_when: false
"""
FAILING_PLAY = """
- name: Fail after the disks were built
  hosts: all
  gather_facts: false
  tasks:
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: the service did not start
"""


def playbooks_with(tmp_path: Path, extra_play: str) -> Path:
    """A copy of playbooks/ whose deploy.yml ends with `extra_play` (destroy.yml unchanged).
    The callback plugin finds its contract at ../vocabulary, so that comes along."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "playbooks", root / "playbooks")
    (root / "vocabulary").symlink_to(REPO / "vocabulary")
    deploy = root / "playbooks" / "deploy.yml"
    deploy.write_text(deploy.read_text() + extra_play)
    return root / "playbooks"


@pytest.fixture
def local_settings(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings.runner_dir = tmp_path / "runs"
    settings.sandbox_root = tmp_path / "sandbox"
    settings.disk_backend = "directory"
    settings.directory_mount = True  # real loop mounts: the teardown must undo them
    settings.default_callback_timeout_s = 240
    yield settings
    # A failed test must not leave its loop mounts behind (nor pytest unable to clean up).
    unmount_below(settings.sandbox_root)


@asynccontextmanager
async def running(
    client: Client, settings: Settings, sessionmaker: SessionMaker, runner: LocalRunner
) -> AsyncIterator[LocalRunner]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, settings, sessionmaker, runner, executor):
            yield runner


@pytest.fixture
async def real_worker(
    client: Client, local_settings: Settings, sessionmaker: SessionMaker
) -> AsyncIterator[LocalRunner]:
    async with running(client, local_settings, sessionmaker, LocalRunner(local_settings)) as runner:
        yield runner


async def status_of(http: httpx.AsyncClient, account: Any, deployment_id: int, *wanted: str) -> Any:
    async def reached() -> Any:
        body = (await http.get(f"/api/deployments/{deployment_id}", headers=account.headers)).json()
        return body if body["status"] in wanted else None

    return await wait_for(reached, timeout_s=180, interval_s=0.5)


async def assert_nothing_left(
    settings: Settings, runner: LocalRunner, deployment: dict[str, Any]
) -> None:
    sandbox = settings.sandbox_root / str(deployment["id"])
    assert not sandbox.exists(), sorted(str(p) for p in sandbox.rglob("*"))
    mounts = Path("/proc/self/mounts").read_text()
    assert str(settings.sandbox_root) not in mounts
    assert {d["state"] for d in deployment["disk_allocations"]} == {"released"}

    # The final callback may land a moment before ansible-runner exits (seconds on a loaded
    # machine): no process may stay.
    async def no_process_left() -> bool:
        return all(
            runner.run_processes(RunRef(f"local-{deployment['id']}-{run}")) == []
            for run in range(1, 4)
        )

    await wait_for(no_process_left, timeout_s=60)


async def launch(http: httpx.AsyncClient, account: Any, template_id: int, name: str) -> Any:
    created = await http.post(
        "/api/deployments",
        json={"template_id": template_id, "deployment_name": name},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    return created.json()


async def test_destroy_after_success_leaves_nothing(
    live_api: str,
    real_worker: LocalRunner,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
) -> None:
    operator = await make_user("operator")
    template_id = await _small_template(sessionmaker, ["/data/pgdata", "/data/pgwal"])
    async with httpx.AsyncClient(base_url=live_api) as http:
        created = await launch(http, operator, template_id, "pg-destroy")
        done = await status_of(http, operator, created["id"], "succeeded", "failed")
        assert done["status"] == "succeeded"
        assert {d["state"] for d in done["disk_allocations"]} == {"allocated"}
        sandbox = local_settings.sandbox_root / str(created["id"])
        assert len(list(sandbox.rglob("*.img"))) == 2
        assert str(sandbox) in Path("/proc/self/mounts").read_text()

        answer = await http.post(
            f"/api/deployments/{created['id']}/destroy", headers=operator.headers
        )
        assert answer.status_code == 202, answer.text
        destroyed = await status_of(http, operator, created["id"], "destroyed", "failed")
        history = (
            await http.get(f"/api/deployments/{created['id']}/history", headers=operator.headers)
        ).json()
    assert destroyed["status"] == "destroyed", [r["message"] for r in history]
    await assert_nothing_left(local_settings, real_worker, destroyed)
    # The teardown playbook's own events reached history, keyed by their run.
    assert any(r["message"].startswith("Teardown triggered") for r in history)
    assert sum(r["message"] == "Playbook finished" for r in history) == 2


async def test_cancel_mid_playbook_stops_every_process_and_tears_down(
    live_api: str,
    client: Client,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
    tmp_path: Path,
) -> None:
    runner = LocalRunner(local_settings, playbooks_dir=playbooks_with(tmp_path, BLOCKING_PLAY))
    operator = await make_user("operator")
    template_id = await _small_template(sessionmaker, ["/data/pgdata"])
    async with running(client, local_settings, sessionmaker, runner):
        async with httpx.AsyncClient(base_url=live_api) as http:
            created = await launch(http, operator, template_id, "pg-cancel")

            first_run = RunRef(f"local-{created['id']}-1")

            async def blocking() -> bool:
                # The blocking task itself: every module runs as `sh -c '… && sleep 0'` too.
                return any(
                    Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00600\x00"
                    for pid in runner.run_processes(first_run)
                    if Path(f"/proc/{pid}/cmdline").exists()
                )

            await wait_for(blocking, timeout_s=180, interval_s=0.5)
            assert (local_settings.sandbox_root / str(created["id"])).exists()
            answer = await http.post(
                f"/api/deployments/{created['id']}/cancel", headers=operator.headers
            )
            assert answer.status_code == 202, answer.text
            assert answer.json()["status"] == "cancelling"
            cancelled = await status_of(http, operator, created["id"], "cancelled", "failed")
            history = (
                await http.get(
                    f"/api/deployments/{created['id']}/history", headers=operator.headers
                )
            ).json()
        assert cancelled["status"] == "cancelled", [r["message"] for r in history]
        await assert_nothing_left(local_settings, runner, cancelled)
        messages = [r["message"] for r in history]
        assert messages[-1] == "Deployment cancelled; nothing of it is left"


async def test_a_failed_deployment_keeps_its_disks_until_destroyed(
    live_api: str,
    client: Client,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
    tmp_path: Path,
) -> None:
    runner = LocalRunner(local_settings, playbooks_dir=playbooks_with(tmp_path, FAILING_PLAY))
    operator = await make_user("operator")
    template_id = await _small_template(sessionmaker, ["/data/pgdata"])
    async with running(client, local_settings, sessionmaker, runner):
        async with httpx.AsyncClient(base_url=live_api) as http:
            created = await launch(http, operator, template_id, "pg-failed")
            failed = await status_of(http, operator, created["id"], "failed", "succeeded")
            assert failed["status"] == "failed"
            assert failed["retained_until"] is not None
            # Kept for inspection or a retry: what it built is still there.
            sandbox = local_settings.sandbox_root / str(created["id"])
            assert len(list(sandbox.rglob("*.img"))) == 1
            for _ in range(2):  # a second destroy after the first ended is refused (409)
                answer = await http.post(
                    f"/api/deployments/{created['id']}/destroy", headers=operator.headers
                )
                if answer.status_code == 409:
                    break
                assert answer.status_code == 202, answer.text
                destroyed = await status_of(http, operator, created["id"], "destroyed")
        await assert_nothing_left(local_settings, runner, destroyed)


async def test_a_worker_killed_during_teardown_is_replaced_and_the_teardown_runs_once(
    live_api: str,
    client: Client,
    local_settings: Settings,
    make_user: Any,
    sessionmaker: SessionMaker,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "teardown-started"
    env = {
        **os.environ,
        "PROVISIO_DATABASE_URL": local_settings.database_url,
        "PROVISIO_TEMPORAL_ADDRESS": local_settings.temporal_address,
        "PROVISIO_TEMPORAL_TASK_QUEUE": local_settings.temporal_task_queue,
        "PROVISIO_CALLBACK_SECRET": local_settings.callback_secret,
        "PROVISIO_PUBLIC_URL": local_settings.public_url,
        "PROVISIO_RUNNER_DIR": str(local_settings.runner_dir),
        "PROVISIO_SANDBOX_ROOT": str(local_settings.sandbox_root),
        "PROVISIO_DIRECTORY_MOUNT": "true",
        "PROVISIO_PIPELINE_POLL_INTERVAL_S": "1",
    }
    doomed = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_worker", "teardown", str(marker)], env=env, cwd=REPO
    )
    operator = await make_user("operator")
    template_id = await _small_template(sessionmaker, ["/data/pgdata"])
    async with httpx.AsyncClient(base_url=live_api) as http:
        try:
            created = await launch(http, operator, template_id, "pg-killed")
            done = await status_of(http, operator, created["id"], "succeeded", "failed")
            assert done["status"] == "succeeded"
            answer = await http.post(
                f"/api/deployments/{created['id']}/destroy", headers=operator.headers
            )
            assert answer.status_code == 202, answer.text

            async def teardown_started() -> bool:
                return marker.exists()

            await wait_for(teardown_started, timeout_s=120, interval_s=0.2)
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()

        # A new worker on the same host: the trigger is retried, finds the run, starts nothing.
        runner = LocalRunner(local_settings)
        async with running(client, local_settings, sessionmaker, runner):
            destroyed = await status_of(http, operator, created["id"], "destroyed", "failed")
            history = (
                await http.get(
                    f"/api/deployments/{created['id']}/history", headers=operator.headers
                )
            ).json()
    assert destroyed["status"] == "destroyed", [r["message"] for r in history]
    await assert_nothing_left(local_settings, runner, destroyed)
    messages = [r["message"] for r in history]
    assert sum(m.startswith("Teardown triggered") for m in messages) == 1
    assert sum(m == "Playbook finished" for m in messages) == 2  # one deploy, one teardown
    runs = local_settings.runner_dir / str(created["id"])
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["1", "2"]
