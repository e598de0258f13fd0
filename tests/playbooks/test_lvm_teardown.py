"""The lvm backend's deploy record and teardown, with real LVM metadata on a loop-device physical
volume.

What runs for real and what does not: this kernel has no device-mapper, so LVM runs with
`activation = 0` in a test lvm.conf (LVM_SYSTEM_DIR, whose device filter also shows LVM nothing
but the test's own loop device): pvcreate, vgcreate, lvcreate and lvremove change real metadata on
the loop device, but no /dev/<vg>/<lv> node ever appears. So:

* the half-built case runs unaided: the deploy creates the volume group and the logical volume for
  real and then fails at mkfs, as a deploy whose device never appeared would;
* the complete case stands a loop device in for each logical volume's node (/dev/<vg>/<lv> as a
  symbolic link to a loop device of an image file, made by the test), so that mkfs, mount,
  the fstab, umount and rmdir all run for real, nothing in check mode. The fstab and the state
  root are the test's own (the runner variables provisio_fstab and provisio_state_root), never
  /etc/fstab or /var/lib/provisio.

Only `destroy.yml --check` runs in check mode, to show that it changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.ansible_vars import write_vars_file
from tests.playbooks.support import PLAYBOOKS, ansible_env, deployment, disk
from tests.playbooks.test_lvm_check_mode import tasks_by_name

HAVE_LVM = shutil.which("lvm") is not None
CAN_LOOP = os.geteuid() == 0 and Path("/dev/loop-control").exists()
pytestmark = pytest.mark.skipif(
    not (HAVE_LVM and CAN_LOOP),
    reason="needs the LVM tools (lvm2), root and loop devices",
)


def losetup(image: Path, size: str) -> str:
    subprocess.run(["truncate", "--size", size, str(image)], check=True)
    return subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass
class Host:
    """A test host: a loop-device PV, LVM configured to see only it, a fstab and a state root."""

    tmp: Path
    pv: str
    lvm_dir: Path
    fstab: Path
    state_root: Path
    mnt: Path
    volume_group: str
    loops: list[str]
    nodes: list[Path]

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

    def logical_volumes(self) -> set[str]:
        result = self.lvm("lvs", "--noheadings", "-o", "lv_name", self.volume_group, check=False)
        return {line.strip() for line in result.stdout.splitlines() if line.strip()}

    def volume_group_exists(self) -> bool:
        return self.lvm("vgs", self.volume_group, check=False).returncode == 0

    def stand_in_node(self, logical_volume: str) -> str:
        """/dev/<vg>/<lv> as a symbolic link to a loop device: what activation would make."""
        loop = losetup(self.tmp / f"{logical_volume}.img", "1G")
        self.loops.append(loop)
        node_dir = Path("/dev") / self.volume_group
        node_dir.mkdir(exist_ok=True)
        (node_dir / logical_volume).symlink_to(loop)
        self.nodes.append(node_dir / logical_volume)
        return loop

    def write_vars(self, deployment_id: int, disks: list[dict[str, Any]]) -> Path:
        vars_file = self.tmp / f"vars-{deployment_id}.yml"
        write_vars_file(
            vars_file,
            {"provisio_deployment": deployment(deployment_id), "provisio_disks": disks},
            {
                "provisio_disk_backend": "lvm",
                "provisio_pvs": [self.pv],
                "provisio_fstab": str(self.fstab),
                "provisio_state_root": str(self.state_root),
            },
        )
        return vars_file

    def run(self, playbook: str, vars_file: Path, *extra: str) -> dict[str, Any]:
        result = subprocess.run(
            ["ansible-playbook", playbook, "-e", f"@{vars_file}", *extra],
            cwd=PLAYBOOKS,
            env=ansible_env(self.tmp, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **self.env),
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
        report["output"] = result.stdout[-6000:] + result.stderr
        report["tasks"] = tasks_by_name(result.stdout)
        return report

    def mounts(self) -> list[str]:
        with open("/proc/mounts") as mounts:
            return [line.split()[1] for line in mounts if f" {self.tmp}/" in line]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    lvm_dir = tmp_path / "lvm"
    lvm_dir.mkdir()
    pv = losetup(tmp_path / "pv.img", "8G")  # sparse: LVM metadata only
    (lvm_dir / "lvm.conf").write_text(
        "global { activation = 0 }\n"
        f'devices {{ use_devicesfile = 0 filter = [ "a|^{pv}$|", "r|.*|" ]'
        " obtain_device_list_from_udev = 0 }\n"
        "backup { backup = 0 archive = 0 }\n"
    )
    fstab = tmp_path / "fstab"
    fstab.write_text("# the test host's fstab\n/dev/sdz9 /srv/elsewhere ext4 defaults 0 0\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    test_host = Host(
        tmp=tmp_path,
        pv=pv,
        lvm_dir=lvm_dir,
        fstab=fstab,
        state_root=tmp_path / "state",
        mnt=mnt,
        volume_group=f"provisio_test_{uuid.uuid4().hex[:8]}",
        loops=[pv],
        nodes=[],
    )
    try:
        yield test_host
    finally:
        for target in sorted(test_host.mounts(), reverse=True):
            subprocess.run(["umount", target], check=False)
        for node in test_host.nodes:
            node.unlink(missing_ok=True)
        if test_host.nodes:
            shutil.rmtree(Path("/dev") / test_host.volume_group, ignore_errors=True)
        for loop in reversed(test_host.loops):
            subprocess.run(["losetup", "--detach", loop], check=False)


def test_a_half_built_deployment_is_torn_down_to_what_was_there_before(host: Host) -> None:
    vars_file = host.write_vars(
        601,
        [disk(f"{host.mnt}/srv/data", volume_group=host.volume_group, logical_volume="data")],
    )
    deployed = host.run("deploy.yml", vars_file)
    # The volume group and the logical volume were made for real; mkfs found no device.
    assert deployed["rc"] == 2, deployed["output"]
    assert deployed["tasks"]["disk : Make the filesystems"]["failed"] is True
    assert host.volume_group_exists()
    assert host.logical_volumes() == {"data"}
    record_file = host.state_root / "601" / "created.json"
    record = json.loads(record_file.read_text())
    assert record == {
        "deployment_id": 601,
        "logical_volumes": [
            {
                "volume_group": host.volume_group,
                "logical_volume": "data",
                "mount_point": f"{host.mnt}/srv/data",
            }
        ],
        # What did not exist: the mount point and its parent (host.mnt did).
        "directories": [f"{host.mnt}/srv", f"{host.mnt}/srv/data"],
    }
    assert record_file.stat().st_mode & 0o777 == 0o600

    destroyed = host.run("destroy.yml", vars_file)
    assert destroyed["rc"] == 0, destroyed["output"]
    assert host.logical_volumes() == set()
    assert host.volume_group_exists()  # never removed: other volumes may live in it
    assert host.lvm("pvs", host.pv).returncode == 0
    assert not (host.state_root / "601").exists()
    assert host.mnt.is_dir()

    again = host.run("destroy.yml", vars_file)
    assert again["rc"] == 0, again["output"]
    assert again["stats"]["localhost"]["changed"] == 0


def test_destroy_removes_only_what_the_deployment_created(host: Host) -> None:
    vg = host.volume_group
    # Before the deployment: the volume group, a volume nobody asked about, a volume the
    # deployment will use as it is, and the parent of its mount points.
    host.lvm("vgcreate", vg, host.pv)
    host.lvm("lvcreate", "--name", "unrelated", "--size", "8m", vg)
    host.lvm("lvcreate", "--name", "shared", "--size", "1g", vg)
    (host.mnt / "srv").mkdir()
    disks = [
        disk(f"{host.mnt}/srv/app/data", volume_group=vg, logical_volume="data"),
        disk(f"{host.mnt}/srv/shared", volume_group=vg, logical_volume="shared"),
    ]
    host.stand_in_node("data")
    host.stand_in_node("shared")
    vars_file = host.write_vars(602, disks)

    deployed = host.run("deploy.yml", vars_file)
    assert deployed["rc"] == 0, deployed["output"]
    assert sorted(host.mounts()) == [f"{host.mnt}/srv/app/data", f"{host.mnt}/srv/shared"]
    fstab_lines = host.fstab.read_text().splitlines()
    assert f"/dev/{vg}/data {host.mnt}/srv/app/data ext4 defaults 0 0" in fstab_lines
    assert f"/dev/{vg}/shared {host.mnt}/srv/shared ext4 defaults 0 0" in fstab_lines
    record = json.loads((host.state_root / "602" / "created.json").read_text())
    assert [lv["logical_volume"] for lv in record["logical_volumes"]] == ["data"]
    assert record["directories"] == [
        f"{host.mnt}/srv/app",
        f"{host.mnt}/srv/app/data",
        f"{host.mnt}/srv/shared",
    ]
    # A second deploy changes no record: what exists now was made by the first one.
    redeployed = host.run("deploy.yml", vars_file)
    assert redeployed["rc"] == 0, redeployed["output"]
    assert (
        redeployed["tasks"]["disk : Record what the deployment is about to create"]["changed"]
        is False
    )
    # Something of the user's beside a mount point, outside the mounted filesystem.
    (host.mnt / "srv" / "app" / "notes.txt").write_text("not Provisio's")

    checked = host.run("destroy.yml", vars_file, "--check")
    assert checked["rc"] == 0, checked["output"]
    assert len(host.mounts()) == 2
    assert host.fstab.read_text().splitlines() == fstab_lines
    assert host.logical_volumes() == {"unrelated", "shared", "data"}

    destroyed = host.run("destroy.yml", vars_file)
    assert destroyed["rc"] == 0, destroyed["output"]
    assert host.mounts() == []
    assert host.fstab.read_text().splitlines() == [
        "# the test host's fstab",
        "/dev/sdz9 /srv/elsewhere ext4 defaults 0 0",
    ]
    # The volume it created went; the one it found and the unrelated one stay, as does the group.
    assert host.logical_volumes() == {"unrelated", "shared"}
    assert host.volume_group_exists()
    # The empty directories it created went; the one holding the user's file stays.
    assert not (host.mnt / "srv" / "app" / "data").exists()
    assert not (host.mnt / "srv" / "shared").exists()
    assert (host.mnt / "srv" / "app" / "notes.txt").read_text() == "not Provisio's"
    assert (host.mnt / "srv").is_dir()
    assert not (host.state_root / "602").exists()

    again = host.run("destroy.yml", vars_file)
    assert again["rc"] == 0, again["output"]
    assert again["stats"]["localhost"]["changed"] == 0
    assert host.logical_volumes() == {"unrelated", "shared"}


def test_destroy_leaves_a_mount_point_that_holds_something_else(host: Host) -> None:
    """A disk's mount point where another filesystem is mounted, and an fstab line for it with
    another source: neither is the deployment's, so neither is touched."""
    vg = host.volume_group
    target = host.mnt / "srv" / "data"
    target.mkdir(parents=True)
    other = losetup(host.tmp / "other.img", "64M")
    host.loops.append(other)
    subprocess.run(["mkfs.ext4", "-q", other], check=True)
    subprocess.run(["mount", other, str(target)], check=True)
    line = f"/dev/sdz8 {target} ext4 defaults 0 0"
    host.fstab.write_text(host.fstab.read_text() + line + "\n")
    vars_file = host.write_vars(603, [disk(str(target), volume_group=vg, logical_volume="data")])

    destroyed = host.run("destroy.yml", vars_file)  # never deployed: no record

    assert destroyed["rc"] == 0, destroyed["output"]
    assert destroyed["stats"]["localhost"]["changed"] == 0
    assert host.mounts() == [str(target)]
    assert line in host.fstab.read_text().splitlines()
