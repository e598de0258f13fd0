"""The disk role never shrinks a disk, on either backend: a deploy asking for less than a disk has
fails, names the disk, and leaves everything as it was, the other disks of the request included.

Real runs of deploy.yml. Directory backend: real image files with real ext4 filesystems; their
content is compared by the bytes of every data extent (the images are sparse), and a marker file
written into the filesystem (with debugfs, or through the loop mount as root) is read back. LVM
backend: real LVM metadata on a loop-device physical volume with activation off
(tests/playbooks/lvm_host.py, test_lvm_real.py says what that runs and skips); the volume's size
and uuid and the volume group's metadata sequence number (one more for every change) are
compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.ansible_vars import write_vars_file
from tests.playbooks.lvm_host import Host, needs_lvm_and_loop_devices
from tests.playbooks.support import (
    GIB,
    PlaybookRun,
    deployment,
    disk,
    image_path,
    run_playbook,
)
from tests.playbooks.test_deploy_playbook import CAN_LOOP_MOUNT, LOOP_MOUNT_SKIP, unmount_below

HAVE_DEBUGFS = shutil.which("debugfs") is not None
MARKER = b"written before the refused shrink\n"


def failed_items(run: PlaybookRun, task: str) -> dict[str, str]:
    """Per disk that failed `task`, its message."""
    return {
        item["disk_item"]["logical_volume"]: item["msg"]
        for item in run.item_results(task)
        if item.get("failed")
    }


def data_digest(path: Path) -> str:
    """sha256 of a sparse file's size and every data extent with its offset: its content, read
    without the holes."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        fd, offset, end = handle.fileno(), 0, path.stat().st_size
        while offset < end:
            try:
                offset = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(fd, offset, os.SEEK_HOLE)
            digest.update(f"@{offset}:".encode())
            handle.seek(offset)
            while offset < hole:
                chunk = handle.read(min(1 << 20, hole - offset))
                digest.update(chunk)
                offset += len(chunk)
    return digest.hexdigest()


def debugfs(image: Path, request: str, *, write: bool = False) -> bytes:
    args = ["debugfs", *(["-w"] if write else []), "-R", request, str(image)]
    return subprocess.run(args, capture_output=True, check=True).stdout


class Sandbox:
    """A directory-backend deployment under tmp, run for real."""

    def __init__(self, tmp: Path, deployment_id: int, *, mount: bool) -> None:
        self.tmp, self.root, self.deployment_id, self.mount = (
            tmp,
            tmp / "sandbox",
            deployment_id,
            mount,
        )
        self.vars_file = tmp / f"vars-{deployment_id}.yml"

    def deploy(self, disks: list[dict[str, Any]]) -> PlaybookRun:
        write_vars_file(
            self.vars_file,
            {"provisio_deployment": deployment(self.deployment_id), "provisio_disks": disks},
            {
                "provisio_disk_backend": "directory",
                "provisio_sandbox_root": str(self.root),
                "provisio_directory_mount": self.mount,
            },
        )
        return run_playbook("deploy.yml", self.vars_file, self.tmp)

    def image(self, logical_volume: str) -> Path:
        return image_path(self.root, self.deployment_id, "vg", logical_volume)

    def mount_point(self, mount_point: str) -> Path:
        return self.root / str(self.deployment_id) / mount_point.lstrip("/")


def data_and_logs(data_gb: int, *, logs: bool) -> list[dict[str, Any]]:
    disks = [disk("/srv/data", size_gb=data_gb, volume_group="vg", logical_volume="data")]
    if logs:
        disks.append(disk("/srv/logs", volume_group="vg", logical_volume="logs"))
    return disks


@pytest.mark.skipif(not HAVE_DEBUGFS, reason="debugfs (Debian package e2fsprogs) is not installed")
def test_an_image_file_is_never_shrunk(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, 801, mount=False)
    first = sandbox.deploy(data_and_logs(2, logs=False))
    assert first.rc == 0, first.output
    image = sandbox.image("data")
    (tmp_path / "marker").write_bytes(MARKER)
    debugfs(image, f"write {tmp_path / 'marker'} marker", write=True)
    before = (image.stat().st_size, image.stat().st_mtime_ns, data_digest(image))
    manifest = (sandbox.root / "801" / ".provisio" / "deployment.json").read_text()

    # data asks for 1 GiB of its 2; a new disk comes with it.
    refused = sandbox.deploy(data_and_logs(1, logs=True))

    assert refused.rc == 2, refused.output
    assert failed_items(refused, "Refuse to shrink an image file") == {
        "data": "The image of vg/data (/srv/data) is 2 GiB, larger than the requested 1 GiB; "
        "disks are never shrunk. Nothing was changed."
    }
    assert "disk : Allocate the image files" not in refused.tasks
    assert (image.stat().st_size, image.stat().st_mtime_ns, data_digest(image)) == before
    assert image.stat().st_size == 2 * GIB
    assert debugfs(image, "cat marker") == MARKER
    assert not sandbox.image("logs").exists()
    assert (sandbox.root / "801" / ".provisio" / "deployment.json").read_text() == manifest


@pytest.mark.skipif(not CAN_LOOP_MOUNT, reason=LOOP_MOUNT_SKIP)
def test_a_mounted_image_file_is_never_shrunk(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, 802, mount=True)
    try:
        first = sandbox.deploy(data_and_logs(2, logs=False))
        assert first.rc == 0, first.output
        marker = sandbox.mount_point("/srv/data") / "marker"
        marker.write_bytes(MARKER)
        os.sync()

        refused = sandbox.deploy(data_and_logs(1, logs=True))

        assert refused.rc == 2, refused.output
        assert set(failed_items(refused, "Refuse to shrink an image file")) == {"data"}
        assert sandbox.image("data").stat().st_size == 2 * GIB
        assert marker.read_bytes() == MARKER  # still mounted, the filesystem intact
        assert not sandbox.image("logs").exists()
    finally:
        unmount_below(sandbox.root)


@needs_lvm_and_loop_devices
def test_a_logical_volume_is_never_shrunk(lvm_host: Host) -> None:
    vg = lvm_host.volume_group

    def disks(data_gb: int, *, logs: bool) -> list[dict[str, Any]]:
        data = f"{lvm_host.mnt}/srv/data"
        wanted = [disk(data, volume_group=vg, logical_volume="data", size_gb=data_gb)]
        if logs:
            wanted.append(disk(f"{lvm_host.mnt}/srv/logs", volume_group=vg, logical_volume="logs"))
        return wanted

    vars_file = lvm_host.write_vars(803, disks(2, logs=False), provisio_lvm_activation=False)
    first = lvm_host.run("deploy.yml", vars_file)
    assert first.rc == 0, first.output
    volumes, group = lvm_host.logical_volumes(), lvm_host.vg_report()
    record = (lvm_host.state_root / "803" / "created.json").read_text()
    manifest = json.loads((lvm_host.state_root / "803" / "deployment.json").read_text())

    vars_file = lvm_host.write_vars(803, disks(1, logs=True), provisio_lvm_activation=False)
    refused = lvm_host.run("deploy.yml", vars_file)

    assert refused.rc == 2, refused.output
    assert failed_items(refused, "Refuse to shrink a logical volume") == {
        "data": f"The logical volume {vg}/data ({lvm_host.mnt}/srv/data) is 2 GiB, larger than "
        "the requested 1 GiB; disks are never shrunk. Nothing was changed."
    }
    # Untouched: the same volume at its size, not one metadata change, no new volume, the
    # deployment's record and manifest as they were.
    assert lvm_host.logical_volumes() == volumes
    assert lvm_host.lv_sizes() == {"data": 2 * GIB}
    assert lvm_host.vg_report() == group
    assert (lvm_host.state_root / "803" / "created.json").read_text() == record
    assert json.loads((lvm_host.state_root / "803" / "deployment.json").read_text()) == manifest


@needs_lvm_and_loop_devices
def test_a_volume_rounded_up_to_whole_extents_is_not_a_shrink(lvm_host: Host) -> None:
    """In a group of 2 GiB extents, 1 GiB is made 2 GiB and 3 GiB is 4 GiB: asking for those
    again is no shrink; asking for 2 GiB of a 4 GiB volume is."""
    vg = lvm_host.volume_group
    lvm_host.lvm("vgcreate", "--physicalextentsize", "2g", vg, lvm_host.pv)
    lvm_host.lvm("lvcreate", "--name", "shared", "--size", "4g", vg)

    def disks(shared_gb: int) -> list[dict[str, Any]]:
        return [
            disk(f"{lvm_host.mnt}/srv/data", volume_group=vg, logical_volume="data"),
            disk(
                f"{lvm_host.mnt}/srv/sh",
                volume_group=vg,
                logical_volume="shared",
                size_gb=shared_gb,
            ),
        ]

    vars_file = lvm_host.write_vars(804, disks(3)[:1], provisio_lvm_activation=False)
    first = lvm_host.run("deploy.yml", vars_file)
    assert first.rc == 0, first.output
    assert lvm_host.lv_sizes() == {"data": 2 * GIB, "shared": 4 * GIB}

    vars_file = lvm_host.write_vars(804, disks(3), provisio_lvm_activation=False)
    again = lvm_host.run("deploy.yml", vars_file)
    assert again.rc == 0, again.output
    assert not failed_items(again, "Refuse to shrink a logical volume")
    assert lvm_host.lv_sizes() == {"data": 2 * GIB, "shared": 4 * GIB}

    vars_file = lvm_host.write_vars(804, disks(2), provisio_lvm_activation=False)
    refused = lvm_host.run("deploy.yml", vars_file)
    assert refused.rc == 2, refused.output
    assert set(failed_items(refused, "Refuse to shrink a logical volume")) == {"shared"}
    assert lvm_host.lv_sizes() == {"data": 2 * GIB, "shared": 4 * GIB}
