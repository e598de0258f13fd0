"""The LVM backend in check mode (a volume group that does not exist yet: nothing can be said of
its logical volumes, so their tasks are skipped, and nothing is changed), the playbook's syntax
check, and ansible-lint over playbooks/. The LVM path for real: test_lvm_real.py."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from pipeline.ansible_vars import write_vars_file
from tests.playbooks.support import (
    PLAYBOOKS,
    VENV_BIN,
    deployment,
    disk,
    run_ansible,
    tasks_by_name,
)

HAVE_LVM = shutil.which("lvm") is not None and shutil.which("vgs") is not None
ANSIBLE_LINT = VENV_BIN / "ansible-lint"


@pytest.mark.skipif(not HAVE_LVM, reason="the LVM tools (Debian package lvm2) are not installed")
def test_lvm_backend_in_check_mode(tmp_path: Path) -> None:
    volume_group = f"provisio_check_{uuid.uuid4().hex[:8]}"  # exists nowhere
    physical_volume = tmp_path / "pv.img"
    physical_volume.write_bytes(b"")  # lvg only needs the device to exist in check mode
    mount_a = f"/srv/provisio-check-{uuid.uuid4().hex[:8]}"
    vars_file = tmp_path / "vars.yml"
    write_vars_file(
        vars_file,
        {
            "provisio_deployment": deployment(301),
            "provisio_disks": [
                disk(mount_a, volume_group=volume_group, logical_volume="data", size_gb=10),
                disk(
                    f"{mount_a}/logs",
                    volume_group=volume_group,
                    logical_volume="logs",
                    filesystem_type="xfs",
                ),
            ],
        },
        {"provisio_disk_backend": "lvm", "provisio_pvs": [str(physical_volume)]},
    )

    result = run_ansible(
        ["ansible-playbook", "--check", "deploy.yml", "-e", f"@{vars_file}"],
        tmp_path,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = tasks_by_name(result.stdout)

    # Validation ran and passed; the directory backend stayed out of it.
    assert not tasks["disk : Check each disk's mount point"].get("failed")
    assert tasks["disk : Check the physical volumes (lvm backend)"].get("skipped") is not True
    assert tasks["disk : Allocate the disks as image files under the sandbox root"]["skipped"]
    # The volume group would be created (once, for both disks) from the given physical volume.
    lvg = tasks["disk : Create the volume groups"]
    assert lvg["changed"] is True
    assert [item["disk_vg"] for item in lvg["results"]] == [volume_group]
    # Nothing can be said yet about volumes in a group that does not exist: skipped, not failed.
    for name in (
        "Create the logical volumes",
        "Make the filesystems",
        "Mount the filesystems",
        "Grow the filesystems to fill their volumes",
    ):
        assert tasks[f"disk : {name}"]["skipped"] is True, name
    # And check mode really changed nothing.
    vgs = subprocess.run(["vgs", volume_group], capture_output=True, text=True, check=False)
    assert vgs.returncode != 0
    assert not Path(mount_a).exists()
    assert physical_volume.read_bytes() == b""


def test_lvm_backend_rejects_bad_physical_volumes_before_touching_anything(
    tmp_path: Path,
) -> None:
    vars_file = tmp_path / "vars.yml"
    write_vars_file(
        vars_file,
        {"provisio_deployment": deployment(302), "provisio_disks": [disk("/srv/x")]},
        {"provisio_disk_backend": "lvm", "provisio_pvs": ["sdb"]},  # not an absolute path
    )
    result = run_ansible(
        ["ansible-playbook", "--check", "deploy.yml", "-e", f"@{vars_file}"],
        tmp_path,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    tasks = tasks_by_name(result.stdout)
    assert tasks["disk : Check the physical volumes (lvm backend)"]["failed"] is True
    assert "disk : Create the volume groups" not in tasks


@pytest.mark.parametrize("playbook", ["deploy.yml", "destroy.yml"])
def test_syntax_check(tmp_path: Path, playbook: str) -> None:
    result = run_ansible(["ansible-playbook", "--syntax-check", playbook], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"playbook: {playbook}" in result.stdout


@pytest.mark.skipif(not ANSIBLE_LINT.exists(), reason="ansible-lint is not installed")
def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    # Linted in a copy: ansible-lint writes caches next to what it lints.
    copy = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOKS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    result = run_ansible(
        [str(ANSIBLE_LINT), "--offline", "--profile", "production", "--nocolor"],
        tmp_path,
        cwd=copy,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output
    assert "0 failure(s), 0 warning(s)" in output
