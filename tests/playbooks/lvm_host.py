"""A test host for the lvm backend: a loop-device physical volume that only the test's LVM sees.

Every LVM command (the test's and the playbook's) runs with LVM_SYSTEM_DIR pointing at the test's
own lvm.conf: `activation = 0` (this kernel has no device-mapper, and the host's device-mapper is
never touched), a device filter that shows LVM nothing but the test's loop device, no metadata
backups or archives in /etc/lvm. Each test has its own volume group name. `lvm_test_host()`
takes away what it made even when the test fails: mounts below its tmp dir, stand-in device
nodes, the volume group, the loop devices.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.ansible_vars import write_vars_file
from tests.playbooks.support import PlaybookRun, deployment, run_playbook

HAVE_LVM = shutil.which("lvm") is not None
CAN_LOOP = os.geteuid() == 0 and Path("/dev/loop-control").exists()
needs_lvm_and_loop_devices = pytest.mark.skipif(
    not (HAVE_LVM and CAN_LOOP),
    reason="needs the LVM tools (Debian package lvm2), root and loop devices",
)


def losetup(image: Path, size: str) -> str:
    """A loop device on a new sparse image file of `size`."""
    subprocess.run(["truncate", "--size", size, str(image)], check=True)
    return subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()


def lvm_conf(pv: str, *, activation: bool = False) -> str:
    return (
        f"global {{ activation = {int(activation)} }}\n"
        f'devices {{ use_devicesfile = 0 filter = [ "a|^{pv}$|", "r|.*|" ]'
        " obtain_device_list_from_udev = 0 }\n"
        "backup { backup = 0 archive = 0 }\n"
    )


@dataclass
class Host:
    """A loop-device PV, LVM configured to see only it, a fstab, a state root, a mount root."""

    tmp: Path
    pv: str
    lvm_dir: Path
    fstab: Path
    state_root: Path
    mnt: Path
    volume_group: str
    loops: list[str] = field(default_factory=list)
    nodes: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"LVM_SYSTEM_DIR": str(self.lvm_dir)}

    def lvm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
        )

    def _report(self, command: str, fields: str, kind: str) -> list[dict[str, str]]:
        result = self.lvm(
            command,
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "--options",
            fields,
            self.volume_group,
        )
        return [row for report in json.loads(result.stdout)["report"] for row in report[kind]]

    def logical_volumes(self) -> dict[str, dict[str, str]]:
        """Per logical volume of the test's group: its size in bytes, uuid and attributes."""
        if not self.volume_group_exists():
            return {}
        rows = self._report("lvs", "lv_name,lv_size,lv_uuid,lv_attr", "lv")
        return {row["lv_name"]: row for row in rows}

    def lv_names(self) -> set[str]:
        return set(self.logical_volumes())

    def lv_sizes(self) -> dict[str, int]:
        return {name: int(row["lv_size"]) for name, row in self.logical_volumes().items()}

    def vg_report(self) -> dict[str, str]:
        """vgs of the test's group: name, size, free (bytes), seqno (one more per metadata
        change), pv_count, lv_count."""
        fields = "vg_name,vg_size,vg_free,vg_seqno,pv_count,lv_count"
        (row,) = self._report("vgs", fields, "vg")
        return row

    def volume_group_exists(self) -> bool:
        return self.lvm("vgs", self.volume_group, check=False).returncode == 0

    def stand_in_node(self, logical_volume: str, size: str = "1G") -> str:
        """/dev/<vg>/<lv> as a symbolic link to a loop device: what activation would make."""
        loop = losetup(self.tmp / f"{logical_volume}.img", size)
        self.loops.append(loop)
        node_dir = Path("/dev") / self.volume_group
        node_dir.mkdir(exist_ok=True)
        (node_dir / logical_volume).symlink_to(loop)
        self.nodes.append(node_dir / logical_volume)
        return loop

    def write_vars(self, deployment_id: int, disks: list[dict[str, Any]], **runner: object) -> Path:
        vars_file = self.tmp / f"vars-{deployment_id}.yml"
        write_vars_file(
            vars_file,
            {"provisio_deployment": deployment(deployment_id), "provisio_disks": disks},
            {
                "provisio_disk_backend": "lvm",
                "provisio_pvs": [self.pv],
                "provisio_fstab": str(self.fstab),
                "provisio_state_root": str(self.state_root),
                **runner,
            },
        )
        return vars_file

    def run(self, playbook: str, vars_file: Path, *extra: str, **env: str) -> PlaybookRun:
        return run_playbook(playbook, vars_file, self.tmp, *extra, **{**self.env, **env})

    def mounts(self) -> list[str]:
        with open("/proc/mounts") as mounts:
            return [line.split()[1] for line in mounts if f" {self.tmp}/" in line]


@contextmanager
def lvm_test_host(tmp_path: Path) -> Iterator[Host]:
    lvm_dir = tmp_path / "lvm"
    lvm_dir.mkdir()
    pv = losetup(tmp_path / "pv.img", "8G")  # sparse: LVM metadata only
    (lvm_dir / "lvm.conf").write_text(lvm_conf(pv))
    fstab = tmp_path / "fstab"
    fstab.write_text("# the test host's fstab\n/dev/sdz9 /srv/elsewhere ext4 defaults 0 0\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    host = Host(
        tmp=tmp_path,
        pv=pv,
        lvm_dir=lvm_dir,
        fstab=fstab,
        state_root=tmp_path / "state",
        mnt=mnt,
        volume_group=f"provisio_test_{uuid.uuid4().hex[:8]}",
        loops=[pv],
    )
    try:
        yield host
    finally:
        for target in sorted(host.mounts(), reverse=True):
            subprocess.run(["umount", target], check=False)
        for node in host.nodes:
            node.unlink(missing_ok=True)
        if host.nodes:
            shutil.rmtree(Path("/dev") / host.volume_group, ignore_errors=True)
        host.lvm("vgremove", "--force", host.volume_group, check=False)
        for loop in reversed(host.loops):
            subprocess.run(["losetup", "--detach", loop], check=False)
