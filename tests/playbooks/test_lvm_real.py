"""The lvm backend, the production disk path, run for real: deploy.yml and destroy.yml through the
disk role against a loop-device physical volume (tests/playbooks/lvm_host.py), with `vgs` and
`lvs` asserted after each run.

What runs for real and what does not. This kernel has no device-mapper, so the test's lvm.conf
says `activation = 0`: pvcreate, vgcreate, lvcreate, lvextend and lvremove change real LVM
metadata on the loop device, made by community.general.lvg and lvol as in production. No
/dev/<vg>/<lv> node can appear, so the runs set the runner variable provisio_lvm_activation to
false; the role then checks that LVM's own configuration agrees (and refuses the switch where it
does not) and skips its three filesystem tasks (make, mount, grow) on that condition. They are
asserted skipped for that reason, not run in check mode: nothing is mounted, the fstab is not
touched. mkfs, mount and the filesystem's growth run for real on stand-in device nodes in
test_lvm_teardown.py and test_lvm_filesystem_grow.py.
"""

from __future__ import annotations

import json
from typing import Any

from tests.playbooks.lvm_host import Host, lvm_conf, needs_lvm_and_loop_devices
from tests.playbooks.support import GIB, PlaybookRun, disk

pytestmark = needs_lvm_and_loop_devices

ACTIVATION_OFF = {"provisio_lvm_activation": False}
ACTIVATION_CHECK = "disk : Check that LVM's activation is off, as provisio_lvm_activation says"
FILESYSTEM_TASKS = (
    "Make the filesystems",
    "Mount the filesystems",
    "Grow the filesystems to fill their volumes",
)


def two_disks(host: Host, *, data_gb: int, logs_gb: int) -> list[dict[str, Any]]:
    """One volume group, two logical volumes, the second mounted inside the first."""
    return [
        disk(
            f"{host.mnt}/srv/data",
            volume_group=host.volume_group,
            logical_volume="data",
            size_gb=data_gb,
        ),
        disk(
            f"{host.mnt}/srv/data/logs",
            volume_group=host.volume_group,
            logical_volume="logs",
            size_gb=logs_gb,
            filesystem_type="xfs",
        ),
    ]


def changed_items(run: PlaybookRun, task: str) -> dict[str, bool]:
    """Per logical volume, whether `task` changed it."""
    return {item["disk_item"]["logical_volume"]: item["changed"] for item in run.item_results(task)}


def manifest_sizes(host: Host, deployment_id: int) -> dict[str, int]:
    manifest = json.loads((host.state_root / str(deployment_id) / "deployment.json").read_text())
    return {disk["logical_volume"]: disk["size_gb"] for disk in manifest["disks"]}


def assert_no_filesystem_work(host: Host, run: PlaybookRun, fstab: str) -> None:
    for task in FILESYSTEM_TASKS:
        items = run.item_results(task)
        assert items, task
        assert all(item["skipped"] for item in items), task
        assert {item["false_condition"] for item in items} == {"disk_lvm_activation"}, task
    assert host.mounts() == []
    assert host.fstab.read_text() == fstab
    assert not (host.mnt / "srv").exists()  # mount point directories come with the mount


def test_create_rerun_grow_refuse_a_shrink_and_remove(lvm_host: Host) -> None:
    host, vg = lvm_host, lvm_host.volume_group
    fstab = host.fstab.read_text()

    # Create: the volume group on the loop device and two 1 GiB logical volumes.
    vars_file = host.write_vars(701, two_disks(host, data_gb=1, logs_gb=1), **ACTIVATION_OFF)
    created = host.run("deploy.yml", vars_file)
    assert created.rc == 0, created.output
    assert "no filesystem is made, grown or mounted" in created.tasks[ACTIVATION_CHECK]["msg"]
    assert created.tasks["disk : Create the volume groups"]["changed"] is True
    assert changed_items(created, "Create the logical volumes") == {"data": True, "logs": True}
    group = host.vg_report()
    assert (group["vg_name"], group["pv_count"], group["lv_count"]) == (vg, "1", "2")
    assert int(group["vg_free"]) == int(group["vg_size"]) - 2 * GIB
    assert host.lvm("pvs", "--noheadings", "-o", "vg_name", host.pv).stdout.strip() == vg
    assert host.lv_sizes() == {"data": GIB, "logs": GIB}
    assert_no_filesystem_work(host, created, fstab)
    record = json.loads((host.state_root / "701" / "created.json").read_text())
    assert [lv["logical_volume"] for lv in record["logical_volumes"]] == ["data", "logs"]
    assert manifest_sizes(host, 701) == {"data": 1, "logs": 1}
    volumes = host.logical_volumes()

    # Re-run unchanged: no task changes anything, and LVM's metadata is not even rewritten.
    rerun = host.run("deploy.yml", vars_file)
    assert rerun.rc == 0, rerun.output
    assert rerun.stats["localhost"]["changed"] == 0
    assert rerun.tasks["disk : Create the volume groups"]["changed"] is False
    assert changed_items(rerun, "Create the logical volumes") == {"data": False, "logs": False}
    assert host.vg_report()["vg_seqno"] == group["vg_seqno"]
    assert host.logical_volumes() == volumes

    # Grow data to 3 GiB. In check mode first: lvextend --test, nothing written.
    vars_file = host.write_vars(701, two_disks(host, data_gb=3, logs_gb=1), **ACTIVATION_OFF)
    checked = host.run("deploy.yml", vars_file, "--check")
    assert checked.rc == 0, checked.output
    assert changed_items(checked, "Create the logical volumes") == {"data": True, "logs": False}
    assert host.vg_report()["vg_seqno"] == group["vg_seqno"]
    assert host.logical_volumes() == volumes
    assert manifest_sizes(host, 701) == {"data": 1, "logs": 1}
    # For real: lvextend on data only; the manifest follows.
    grown = host.run("deploy.yml", vars_file)
    assert grown.rc == 0, grown.output
    assert changed_items(grown, "Create the logical volumes") == {"data": True, "logs": False}
    assert host.lv_sizes() == {"data": 3 * GIB, "logs": GIB}
    assert int(host.vg_report()["vg_free"]) == int(group["vg_size"]) - 4 * GIB
    assert host.logical_volumes()["data"]["lv_uuid"] == volumes["data"]["lv_uuid"]
    assert manifest_sizes(host, 701) == {"data": 3, "logs": 1}
    assert_no_filesystem_work(host, grown, fstab)
    seqno = host.vg_report()["vg_seqno"]

    # Shrink data to 2 GiB: refused before any change (test_shrink_refused.py looks closer).
    vars_file = host.write_vars(701, two_disks(host, data_gb=2, logs_gb=1), **ACTIVATION_OFF)
    shrunk = host.run("deploy.yml", vars_file)
    assert shrunk.rc == 2, shrunk.output
    assert shrunk.tasks["disk : Refuse to shrink a logical volume"]["failed"] is True
    assert "disk : Create the logical volumes" not in shrunk.tasks
    assert host.lv_sizes() == {"data": 3 * GIB, "logs": GIB}
    assert host.vg_report()["vg_seqno"] == seqno
    assert manifest_sizes(host, 701) == {"data": 3, "logs": 1}

    # Remove: the logical volumes go, the volume group and its physical volume stay.
    removed = host.run("destroy.yml", vars_file)
    assert removed.rc == 0, removed.output
    assert host.lv_names() == set()
    group = host.vg_report()
    assert (group["lv_count"], group["vg_free"]) == ("0", group["vg_size"])
    assert host.lvm("pvs", "--noheadings", "-o", "vg_name", host.pv).stdout.strip() == vg
    assert not (host.state_root / "701").exists()
    assert host.fstab.read_text() == fstab
    again = host.run("destroy.yml", vars_file)
    assert again.rc == 0, again.output
    assert again.stats["localhost"]["changed"] == 0


def test_the_switch_is_refused_where_lvm_activates_volumes(lvm_host: Host) -> None:
    """provisio_lvm_activation false skips every filesystem step: on a host whose LVM would
    activate the volumes, that would leave them bare and call the deploy a success."""
    activating = lvm_host.tmp / "lvm-activating"
    activating.mkdir()
    (activating / "lvm.conf").write_text(lvm_conf(lvm_host.pv, activation=True))
    vars_file = lvm_host.write_vars(
        702,
        [disk(f"{lvm_host.mnt}/srv/data", volume_group=lvm_host.volume_group)],
        **ACTIVATION_OFF,
    )

    refused = lvm_host.run("deploy.yml", vars_file, LVM_SYSTEM_DIR=str(activating))

    assert refused.rc == 2, refused.output
    check = refused.tasks[ACTIVATION_CHECK]
    assert check["failed"] is True
    assert "this host's LVM activates logical volumes (activation=1)" in check["msg"]
    assert "disk : Record what the deployment is about to create" not in refused.tasks
    assert not lvm_host.volume_group_exists()
    assert not (lvm_host.state_root / "702").exists()


def test_the_switch_must_be_a_boolean(lvm_host: Host) -> None:
    vars_file = lvm_host.write_vars(
        703,
        [disk(f"{lvm_host.mnt}/srv/data", volume_group=lvm_host.volume_group)],
        provisio_lvm_activation="no",
    )
    refused = lvm_host.run("deploy.yml", vars_file)
    assert refused.rc == 2, refused.output
    assert refused.tasks["disk : Check the activation switch (lvm backend)"]["failed"] is True
    assert not lvm_host.volume_group_exists()
