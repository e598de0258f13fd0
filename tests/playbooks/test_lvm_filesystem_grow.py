"""A grown logical volume's filesystem grows with it, mounted (ext4 and xfs), run for real.

The logical volumes are real LVM metadata on a loop-device physical volume with activation off
(tests/playbooks/lvm_host.py); lvcreate and lvextend run for real. Activation would give each
volume a node, /dev/<vg>/<lv>, a symbolic link to its device-mapper device, which lvextend
grows. This kernel has no device-mapper, so the test makes that node itself: a symbolic link to
a loop device of an image file (a stand-in, as in test_lvm_teardown.py), and grows the stand-in
before the grow run as lvextend would grow the real device. With that, mkfs, mount, resize2fs and
xfs_growfs run for real, nothing in check mode, and provisio_lvm_activation stays at its default
(true), as in production.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.playbooks.lvm_host import Host, needs_lvm_and_loop_devices
from tests.playbooks.support import GIB, disk

pytestmark = needs_lvm_and_loop_devices

MARKER = "written before the grow\n"
CAP_SYS_RESOURCE = 24


def has_capability(bit: int) -> bool:
    with open("/proc/self/status") as status:
        effective = next(line for line in status if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> bit & 1)


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


def filesystem_bytes(mount_point: Path) -> int:
    stat = os.statvfs(mount_point)
    return stat.f_blocks * stat.f_frsize


def grow_stand_in(host: Host, logical_volume: str, loop: str, size: str) -> None:
    """What lvextend does to an active volume's device: it grows under the mounted filesystem."""
    image = host.tmp / f"{logical_volume}.img"
    subprocess.run(["truncate", "--size", size, str(image)], check=True)
    subprocess.run(["losetup", "--set-capacity", loop], check=True)


@pytest.mark.parametrize("filesystem", FILESYSTEMS)
def test_the_filesystem_grows_with_its_volume(lvm_host: Host, filesystem: str) -> None:
    host, vg = lvm_host, lvm_host.volume_group
    mount_point = host.mnt / "data"

    def vars_file(size_gb: int) -> Path:
        wanted = disk(
            str(mount_point),
            volume_group=vg,
            logical_volume="data",
            size_gb=size_gb,
            filesystem_type=filesystem,
        )
        return host.write_vars(705, [wanted])

    # vgcreate refuses a name that /dev already holds: the group comes before the stand-in.
    host.lvm("vgcreate", vg, host.pv)
    loop = host.stand_in_node("data", "1G")
    created = host.run("deploy.yml", vars_file(1))
    assert created.rc == 0, created.output
    assert host.mounts() == [str(mount_point)]
    assert filesystem_bytes(mount_point) <= GIB
    (mount_point / "marker").write_text(MARKER)
    (grow,) = created.item_results("Grow the filesystems to fill their volumes")
    assert grow["changed"] is False  # mkfs filled the volume

    grow_stand_in(host, "data", loop, "2G")
    grown = host.run("deploy.yml", vars_file(2))

    assert grown.rc == 0, grown.output
    assert host.lv_sizes() == {"data": 2 * GIB}
    (grow,) = grown.item_results("Grow the filesystems to fill their volumes")
    assert grow["changed"] is True
    assert filesystem_bytes(mount_point) > 1.8 * GIB  # less what the filesystem keeps
    assert (mount_point / "marker").read_text() == MARKER
    assert host.mounts() == [str(mount_point)]

    again = host.run("deploy.yml", vars_file(2))
    assert again.rc == 0, again.output
    (grow,) = again.item_results("Grow the filesystems to fill their volumes")
    assert grow["changed"] is False
