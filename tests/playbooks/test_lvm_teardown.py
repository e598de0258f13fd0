"""The lvm backend's deploy record and teardown, with real LVM metadata on a loop-device physical
volume.

What runs for real and what does not: this kernel has no device-mapper, so LVM runs with
`activation = 0` in a test lvm.conf (tests/playbooks/lvm_host.py: LVM_SYSTEM_DIR, whose device
filter also shows LVM nothing but the test's own loop device): pvcreate, vgcreate, lvcreate and
lvremove change real metadata on the loop device, but no /dev/<vg>/<lv> node ever appears. The
runs here leave provisio_lvm_activation at its default (true), as production does, so the role
makes and mounts filesystems (tests/playbooks/test_lvm_real.py runs the path with it false):

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
import subprocess

from tests.playbooks.lvm_host import Host, losetup, needs_lvm_and_loop_devices
from tests.playbooks.support import disk

pytestmark = needs_lvm_and_loop_devices


def test_a_half_built_deployment_is_torn_down_to_what_was_there_before(lvm_host: Host) -> None:
    vars_file = lvm_host.write_vars(
        601,
        [
            disk(
                f"{lvm_host.mnt}/srv/data",
                volume_group=lvm_host.volume_group,
                logical_volume="data",
            )
        ],
    )
    deployed = lvm_host.run("deploy.yml", vars_file)
    # The volume group and the logical volume were made for real; mkfs found no device.
    assert deployed.rc == 2, deployed.output
    assert deployed.tasks["disk : Make the filesystems"]["failed"] is True
    assert lvm_host.volume_group_exists()
    assert lvm_host.lv_names() == {"data"}
    record_file = lvm_host.state_root / "601" / "created.json"
    record = json.loads(record_file.read_text())
    assert record == {
        "deployment_id": 601,
        "logical_volumes": [
            {
                "volume_group": lvm_host.volume_group,
                "logical_volume": "data",
                "mount_point": f"{lvm_host.mnt}/srv/data",
            }
        ],
        # What did not exist: the mount point and its parent (lvm_host.mnt did).
        "directories": [f"{lvm_host.mnt}/srv", f"{lvm_host.mnt}/srv/data"],
    }
    assert record_file.stat().st_mode & 0o777 == 0o600

    destroyed = lvm_host.run("destroy.yml", vars_file)
    assert destroyed.rc == 0, destroyed.output
    assert lvm_host.lv_names() == set()
    assert lvm_host.volume_group_exists()  # never removed: other volumes may live in it
    assert lvm_host.lvm("pvs", lvm_host.pv).returncode == 0
    assert not (lvm_host.state_root / "601").exists()
    assert lvm_host.mnt.is_dir()

    again = lvm_host.run("destroy.yml", vars_file)
    assert again.rc == 0, again.output
    assert again.stats["localhost"]["changed"] == 0


def test_destroy_removes_only_what_the_deployment_created(lvm_host: Host) -> None:
    vg = lvm_host.volume_group
    # Before the deployment: the volume group, a volume nobody asked about, a volume the
    # deployment will use as it is, and the parent of its mount points.
    lvm_host.lvm("vgcreate", vg, lvm_host.pv)
    lvm_host.lvm("lvcreate", "--name", "unrelated", "--size", "8m", vg)
    lvm_host.lvm("lvcreate", "--name", "shared", "--size", "1g", vg)
    (lvm_host.mnt / "srv").mkdir()
    disks = [
        disk(f"{lvm_host.mnt}/srv/app/data", volume_group=vg, logical_volume="data"),
        disk(f"{lvm_host.mnt}/srv/shared", volume_group=vg, logical_volume="shared"),
    ]
    lvm_host.stand_in_node("data")
    lvm_host.stand_in_node("shared")
    vars_file = lvm_host.write_vars(602, disks)

    deployed = lvm_host.run("deploy.yml", vars_file)
    assert deployed.rc == 0, deployed.output
    assert sorted(lvm_host.mounts()) == [
        f"{lvm_host.mnt}/srv/app/data",
        f"{lvm_host.mnt}/srv/shared",
    ]
    fstab_lines = lvm_host.fstab.read_text().splitlines()
    assert f"/dev/{vg}/data {lvm_host.mnt}/srv/app/data ext4 defaults 0 0" in fstab_lines
    assert f"/dev/{vg}/shared {lvm_host.mnt}/srv/shared ext4 defaults 0 0" in fstab_lines
    record = json.loads((lvm_host.state_root / "602" / "created.json").read_text())
    assert [lv["logical_volume"] for lv in record["logical_volumes"]] == ["data"]
    assert record["directories"] == [
        f"{lvm_host.mnt}/srv/app",
        f"{lvm_host.mnt}/srv/app/data",
        f"{lvm_host.mnt}/srv/shared",
    ]
    # A second deploy changes no record: what exists now was made by the first one.
    redeployed = lvm_host.run("deploy.yml", vars_file)
    assert redeployed.rc == 0, redeployed.output
    assert (
        redeployed.tasks["disk : Record what the deployment is about to create"]["changed"] is False
    )
    # Something of the user's beside a mount point, outside the mounted filesystem.
    (lvm_host.mnt / "srv" / "app" / "notes.txt").write_text("not Provisio's")

    checked = lvm_host.run("destroy.yml", vars_file, "--check")
    assert checked.rc == 0, checked.output
    assert len(lvm_host.mounts()) == 2
    assert lvm_host.fstab.read_text().splitlines() == fstab_lines
    assert lvm_host.lv_names() == {"unrelated", "shared", "data"}

    destroyed = lvm_host.run("destroy.yml", vars_file)
    assert destroyed.rc == 0, destroyed.output
    assert lvm_host.mounts() == []
    assert lvm_host.fstab.read_text().splitlines() == [
        "# the test host's fstab",
        "/dev/sdz9 /srv/elsewhere ext4 defaults 0 0",
    ]
    # The volume it created went; the one it found and the unrelated one stay, as does the group.
    assert lvm_host.lv_names() == {"unrelated", "shared"}
    assert lvm_host.volume_group_exists()
    # The empty directories it created went; the one holding the user's file stays.
    assert not (lvm_host.mnt / "srv" / "app" / "data").exists()
    assert not (lvm_host.mnt / "srv" / "shared").exists()
    assert (lvm_host.mnt / "srv" / "app" / "notes.txt").read_text() == "not Provisio's"
    assert (lvm_host.mnt / "srv").is_dir()
    assert not (lvm_host.state_root / "602").exists()

    again = lvm_host.run("destroy.yml", vars_file)
    assert again.rc == 0, again.output
    assert again.stats["localhost"]["changed"] == 0
    assert lvm_host.lv_names() == {"unrelated", "shared"}


def test_destroy_leaves_a_mount_point_that_holds_something_else(lvm_host: Host) -> None:
    """A disk's mount point where another filesystem is mounted, and an fstab line for it with
    another source: neither is the deployment's, so neither is touched."""
    vg = lvm_host.volume_group
    target = lvm_host.mnt / "srv" / "data"
    target.mkdir(parents=True)
    other = losetup(lvm_host.tmp / "other.img", "64M")
    lvm_host.loops.append(other)
    subprocess.run(["mkfs.ext4", "-q", other], check=True)
    subprocess.run(["mount", other, str(target)], check=True)
    line = f"/dev/sdz8 {target} ext4 defaults 0 0"
    lvm_host.fstab.write_text(lvm_host.fstab.read_text() + line + "\n")
    vars_file = lvm_host.write_vars(
        603, [disk(str(target), volume_group=vg, logical_volume="data")]
    )

    destroyed = lvm_host.run("destroy.yml", vars_file)  # never deployed: no record

    assert destroyed.rc == 0, destroyed.output
    assert destroyed.stats["localhost"]["changed"] == 0
    assert lvm_host.mounts() == [str(target)]
    assert line in lvm_host.fstab.read_text().splitlines()
