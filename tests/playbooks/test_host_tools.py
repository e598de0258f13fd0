"""The host-tools check: the playbook refuses to start on a host that lacks a tool (nothing
built), and `provisio doctor` reads the same table the role checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack import host_tools
from pipeline.ansible_vars import write_vars_file
from settings import Settings
from tests.playbooks.support import deployment, disk, run_ansible
from tests.playbooks.test_lvm_check_mode import tasks_by_name

MISSING_TOOL = {
    "name": "mkfs.provisio-test-missing",
    "package": "provisio-test",
    "filesystem": "ext4",
}


def test_a_missing_tool_fails_the_run_before_anything_is_built(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    vars_file = tmp_path / "vars.yml"
    write_vars_file(
        vars_file,
        {"provisio_deployment": deployment(401), "provisio_disks": [disk("/srv/data")]},
        {"provisio_disk_backend": "directory", "provisio_sandbox_root": str(sandbox)},
    )
    # Extra vars outrank role vars: the table gains a tool no host has.
    table = tmp_path / "tools.json"
    tools = [{"name": "blkid", "package": "util-linux"}, MISSING_TOOL]
    table.write_text(json.dumps({"disk_host_tools": tools}))
    result = run_ansible(
        ["ansible-playbook", "deploy.yml", "-e", f"@{vars_file}", "-e", f"@{table}"],
        tmp_path,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    check = tasks_by_name(result.stdout)["disk : Check that the host has the tools the disks need"]
    assert check["failed"] is True
    assert check["missing"] == ["mkfs.provisio-test-missing"]
    assert "package provisio-test" in check["msg"]
    assert "apt-get install -y provisio-test" in check["msg"]
    assert not sandbox.exists()  # not even the sandbox's state directory


def test_tools_are_needed_only_for_what_the_run_uses() -> None:
    module = host_tools._host_tools_module()
    table = host_tools._role_vars()["disk_host_tools"]

    def names(**run: object) -> set[str]:
        return {tool["name"] for tool in module.needed_tools(table, **run)}

    ext4_only = names(backend="directory", filesystems=["ext4"], loop_mount=False)
    assert {"blkid", "mkfs.ext4", "resize2fs"} <= ext4_only
    assert not ext4_only & {"mkfs.xfs", "lvm", "losetup"}
    assert {"mkfs.xfs", "xfs_growfs"} <= names(
        backend="directory", filesystems=["xfs"], loop_mount=False
    )
    assert "losetup" in names(backend="directory", filesystems=[], loop_mount=True)
    assert "losetup" not in names(backend="lvm", filesystems=[], loop_mount=True)
    assert "lvm" in names(backend="lvm", filesystems=[], loop_mount=False)


def test_doctor_checks_every_filesystem_a_template_may_ask_for() -> None:
    settings = Settings(disk_backend="directory", directory_mount=False)
    checked = {check.name for check in host_tools.checks(settings)}
    # Any template may ask for any allowed filesystem, so the dev stack needs all of them.
    assert {"mkfs.ext4", "mkfs.xfs", "blkid"} <= checked
    assert "lvm" not in checked
    for_tests = {check.name for check in host_tools.checks(settings, for_tests=True)}
    assert {"lvm", "losetup", "chromium"} <= for_tests


def test_doctor_reports_a_missing_tool_and_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = host_tools._host_tools_module().find_tool
    monkeypatch.setattr(
        host_tools._host_tools_module(),
        "find_tool",
        lambda name: None if name == "mkfs.xfs" else real(name),
    )
    monkeypatch.setattr(host_tools, "_installer", lambda: None)  # this host cannot install
    assert host_tools.doctor(Settings(), install_missing=True) is False
    captured = capsys.readouterr()
    assert "MISSING mkfs.xfs" in captured.out
    assert "apt-get install -y xfsprogs" in captured.err
