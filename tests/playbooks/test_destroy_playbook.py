"""playbooks/destroy.yml with the directory backend, run for real: real image files, real
filesystems, real loop mounts (as root), after a deploy that succeeded, failed at mkfs, failed
before its mount, or never ran; and once through the local runner, as a deployment's second run."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.ansible_vars import write_vars_file
from pipeline.local_runner import LocalRunner
from pipeline.runner import PipelineRequest
from settings import Settings
from tests.playbooks.support import (
    GIB,
    PLAYBOOKS,
    ansible_env,
    blkid_type,
    deployment,
    disk,
    image_path,
    wait_final,
)
from tests.playbooks.test_deploy_playbook import (
    CAN_LOOP_MOUNT,
    LOOP_MOUNT_SKIP,
    unmount_below,
)
from tests.playbooks.test_lvm_check_mode import tasks_by_name
from vocabulary.runs import RunAction, RunState

needs_loop_mounts = pytest.mark.skipif(not CAN_LOOP_MOUNT, reason=LOOP_MOUNT_SKIP)


class Sandbox:
    """One deployment's vars file under a sandbox root in tmp, and the playbook runs on it."""

    def __init__(self, tmp: Path, deployment_id: int, disks: list[dict[str, Any]], **runner: Any):
        self.tmp = tmp
        self.root = tmp / "sandbox"
        self.deployment_id = deployment_id
        self.disks = disks
        self.vars_file = tmp / f"vars-{deployment_id}.yml"
        write_vars_file(
            self.vars_file,
            {"provisio_deployment": deployment(deployment_id), "provisio_disks": disks},
            {
                "provisio_disk_backend": "directory",
                "provisio_sandbox_root": str(self.root),
                **runner,
            },
        )

    @property
    def path(self) -> Path:
        return self.root / str(self.deployment_id)

    def run(self, playbook: str, *extra: str, **env: str) -> dict[str, Any]:
        """The playbook's JSON report (ansible.posix.json), with `rc` added."""
        result = subprocess.run(
            ["ansible-playbook", playbook, "-e", f"@{self.vars_file}", *extra],
            cwd=PLAYBOOKS,
            env=ansible_env(self.tmp, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(result.stdout + result.stderr) from None
        report["rc"] = result.returncode
        report["output"] = result.stdout + result.stderr
        return report

    def images(self) -> list[Path]:
        return [
            image_path(self.root, self.deployment_id, d["volume_group"], d["logical_volume"])
            for d in self.disks
        ]

    def mounts(self) -> list[str]:
        """Mount points under this deployment's sandbox, from /proc/mounts."""
        with open("/proc/mounts") as mounts:
            targets = [line.split()[1] for line in mounts]
        return [t for t in targets if t.startswith(f"{self.path}/")]

    def loop_devices(self) -> list[str]:
        """Loop devices whose backing file is in this deployment's sandbox."""
        listing = subprocess.run(
            ["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        devices = json.loads(listing)["loopdevices"] if listing.strip() else []
        return [d["name"] for d in devices if str(self.path) in (d.get("back-file") or "")]


def changed(report: dict[str, Any]) -> int:
    return int(report["stats"]["localhost"]["changed"])


def failed_task(report: dict[str, Any]) -> str | None:
    tasks = tasks_by_name(json.dumps(report))
    failed = [name for name, result in tasks.items() if result.get("failed")]
    return failed[0] if failed else None


def two_disks() -> list[dict[str, Any]]:
    return [
        disk("/data", volume_group="vg", logical_volume="data"),
        disk(
            "/data/wal",
            volume_group="vg",
            logical_volume="wal",
            filesystem_type="xfs",
        ),
    ]


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    unmount_below(tmp_path)  # whatever a failed assertion left mounted


@needs_loop_mounts
def test_destroy_after_a_deploy_leaves_nothing_and_twice_changes_nothing(tmp: Path) -> None:
    sandbox = Sandbox(tmp, 501, two_disks(), provisio_directory_mount=True)
    deployed = sandbox.run("deploy.yml")
    assert deployed["rc"] == 0, deployed["output"]
    assert sorted(sandbox.mounts()) == [str(sandbox.path / "data"), str(sandbox.path / "data/wal")]
    assert len(sandbox.loop_devices()) == 2
    (sandbox.path / "data" / "wal" / "user-file").write_text("data on the disk")

    checked = sandbox.run("destroy.yml", "--check")
    assert checked["rc"] == 0, checked["output"]
    assert len(sandbox.mounts()) == 2  # check mode changed nothing
    assert all(image.stat().st_size == GIB for image in sandbox.images())

    destroyed = sandbox.run("destroy.yml")
    assert destroyed["rc"] == 0, destroyed["output"]
    assert sandbox.mounts() == []
    assert sandbox.loop_devices() == []  # unmounting freed the loop devices
    assert not any(image.exists() for image in sandbox.images())
    assert not sandbox.path.exists()
    assert sandbox.root.is_dir()  # only the deployment's own directory went
    assert str(sandbox.root) not in Path("/etc/fstab").read_text()

    again = sandbox.run("destroy.yml")
    assert again["rc"] == 0, again["output"]
    assert changed(again) == 0
    assert not sandbox.path.exists()


def failing_mkfs(tmp: Path) -> str:
    """A PATH whose mkfs.ext4 fails, as on a broken or full host: the image is allocated, its
    filesystem never made."""
    fake_bin = tmp / "fake-bin"
    fake_bin.mkdir()
    mkfs = fake_bin / "mkfs.ext4"
    mkfs.write_text("#!/bin/sh\necho 'mkfs.ext4: simulated failure' >&2\nexit 1\n")
    mkfs.chmod(0o755)
    return os.pathsep.join([str(fake_bin), ansible_env(tmp)["PATH"]])


def test_destroy_after_a_deploy_that_failed_at_mkfs(tmp: Path) -> None:
    sandbox = Sandbox(tmp, 502, [disk("/data", volume_group="vg", logical_volume="data")])
    deployed = sandbox.run("deploy.yml", PATH=failing_mkfs(tmp))
    assert deployed["rc"] == 2, deployed["output"]
    assert failed_task(deployed) == "disk : Make the filesystems on the image files"
    [image] = sandbox.images()
    assert image.stat().st_size == GIB and blkid_type(image) == ""  # half built

    destroyed = sandbox.run("destroy.yml")
    assert destroyed["rc"] == 0, destroyed["output"]
    assert not image.exists()
    assert not sandbox.path.exists()
    assert changed(sandbox.run("destroy.yml")) == 0


@needs_loop_mounts
def test_destroy_after_a_deploy_that_failed_before_its_mounts(tmp: Path) -> None:
    sandbox = Sandbox(tmp, 503, two_disks(), provisio_directory_mount=True)
    # A file where the first mount point directory must go: the images and their filesystems
    # are made, then the deploy stops before anything is mounted.
    sandbox.path.mkdir(parents=True)
    (sandbox.path / "data").write_text("in the way")
    deployed = sandbox.run("deploy.yml")
    assert deployed["rc"] == 2, deployed["output"]
    assert failed_task(deployed) == "disk : Create the mount point directories"
    assert all(blkid_type(image) for image in sandbox.images())
    assert sandbox.mounts() == []

    destroyed = sandbox.run("destroy.yml")
    assert destroyed["rc"] == 0, destroyed["output"]
    assert not sandbox.path.exists()
    assert changed(sandbox.run("destroy.yml")) == 0


def test_destroy_of_a_deployment_never_built_needs_no_filesystem_tool(tmp: Path) -> None:
    sandbox = Sandbox(tmp, 504, two_disks())
    # A host without the disks' mkfs tools (the deploy would refuse to start) can still take a
    # deployment away: the teardown checks only the tools it uses.
    table = tmp / "tools.json"
    tools = [
        {"name": "blkid", "package": "util-linux"},
        {"name": "mkfs.provisio-test-missing", "package": "provisio-test", "filesystem": "ext4"},
    ]
    table.write_text(json.dumps({"disk_host_tools": tools}))
    deploy_refused = sandbox.run("deploy.yml", "-e", f"@{table}")
    assert deploy_refused["rc"] == 2
    assert failed_task(deploy_refused) == "disk : Check that the host has the tools the disks need"

    destroyed = sandbox.run("destroy.yml", "-e", f"@{table}")
    assert destroyed["rc"] == 0, destroyed["output"]
    assert changed(destroyed) == 0
    assert not sandbox.path.exists()
    assert not sandbox.root.exists()  # nothing made on the way


def test_destroy_validates_its_inputs_first(tmp: Path) -> None:
    sandbox = Sandbox(tmp, 505, [disk("/etc/evil", volume_group="vg", logical_volume="lv")])
    sandbox.path.mkdir(parents=True)
    (sandbox.path / "keep").write_text("not removed by a refused teardown")
    destroyed = sandbox.run("destroy.yml")
    assert destroyed["rc"] == 2
    assert failed_task(destroyed) == "disk : Check each disk's mount point"
    assert (sandbox.path / "keep").exists()


def test_the_local_runner_runs_destroy_as_the_deployments_next_run(tmp: Path) -> None:
    runner = LocalRunner(Settings(runner_dir=tmp / "runs", sandbox_root=tmp / "sandbox"))
    disks = [disk("/data", volume_group="vg", logical_volume="data")]

    def request(run: int, action: RunAction) -> PipelineRequest:
        return PipelineRequest(
            deployment_id=506,
            workflow_id="deployment-506",
            callback_url="http://127.0.0.1:9/api/deployments/506/callback",
            callback_token="token",
            variables={"provisio_deployment": deployment(506), "provisio_disks": disks},
            action=action,
            run=run,
        )

    deployed = wait_final(runner, runner.trigger(request(1, RunAction.DEPLOY)))
    assert deployed.state is RunState.SUCCEEDED, deployed
    image = image_path(tmp / "sandbox", 506, "vg", "data")
    assert blkid_type(image) == "ext4"

    destroyed = wait_final(runner, runner.trigger(request(2, RunAction.DESTROY)))
    assert destroyed.state is RunState.SUCCEEDED, destroyed
    assert not (tmp / "sandbox" / "506").exists()
    assert runner.find_run(506, 1) != runner.find_run(506, 2)
